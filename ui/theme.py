"""Look of the UI: a calm theme and a little CSS for the header, status line and message boxes."""

from __future__ import annotations

import gradio as gr

# System fonts only: the default theme fonts come from Google Fonts, unreachable on offline machines.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate",
                       font=["system-ui", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])

CSS = """
#gl-header { align-items: center; gap: 12px; }
#gl-title h2 { margin: 0; font-size: 1.4rem; }
#gl-title p { margin: 2px 0 0; color: var(--body-text-color-subdued); }
#model-status { font-size: 0.85rem; line-height: 1.4; }
.gl-bad { color: var(--error-text-color); }
.gl-notice { padding: 8px 12px; border-radius: 8px; font-size: 0.9rem; }
.gl-error { background: var(--error-background-fill); color: var(--error-text-color);
            border: 1px solid var(--error-border-color); }
.gl-ok { background: #ecfdf5; color: #065f46; border: 1px solid #a7f3d0; }
.gl-prompt-row { align-items: flex-end; }
.gl-prompt-row > button { align-self: flex-end; max-height: 44px; margin-bottom: 2px; }
.gl-push-row { align-items: center; }
.gl-push-row > button { max-height: 48px; }
.gl-pager-row { align-items: center; }
.gl-pager-row > button { max-height: 34px; }
#ls-review { max-height: 420px; overflow-y: auto; gap: 2px; flex-wrap: nowrap; }
.gl-review-row { align-items: center; gap: 8px; padding: 2px 4px;
                 border-bottom: 1px solid var(--border-color-primary); }
.gl-phrase { font-size: 0.8rem; color: var(--body-text-color-subdued); white-space: nowrap; overflow: hidden;
             text-overflow: ellipsis; display: block; }
.gl-pager { text-align: center; font-size: 0.85rem; padding-top: 6px; }
.gl-task { font-size: 0.95rem; }
.gl-info { background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.gl-hidden { display: none !important; }
.gl-keys { font-size: 0.8rem; color: var(--body-text-color-subdued); }
.gl-keys kbd { border: 1px solid var(--border-color-primary); border-radius: 3px; padding: 0 4px; }
/* Phones: the result and its message right after the Detect button, the knobs below them. The input column's
   children join the page's column (display: contents), so the output column can sit between them. */
@media (max-width: 760px) {
  #pg-layout { flex-direction: column; }
  #pg-input { display: contents; }
  #pg-output { order: 1; min-width: 0 !important; max-width: 100%; }
  #pg-controls { min-width: 0 !important; max-width: 100%; }
  #pg-controls { order: 2; }
  #ls-review { order: -1; }  /* Label Studio tab: review the rows, then push */
}
"""

# Keyboard shortcuts of the Label Studio tab's review (ui.labelstudio.KEYS_HELP): outside text fields, while that
# tab is shown, a shortcut key is written into the hidden #ls-key box and the hidden #ls-key-go button pressed,
# which runs the tab's key handler on the server.
KEYS_JS = """
<script>
document.addEventListener("keydown", (event) => {
  const tab = document.querySelector("#tab-labelstudio");
  const box = document.querySelector("#ls-key textarea, #ls-key input");
  if (!tab || !box || tab.offsetParent === null || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select, [contenteditable='true'], [role='listbox']")) return;
  if (!/^([1-9xXzZ]|Enter|ArrowUp|ArrowDown)$/.test(event.key)) return;
  event.preventDefault();
  box.value = event.key;
  box.dispatchEvent(new Event("input", { bubbles: true }));
  setTimeout(() => document.querySelector("#ls-key-go").click(), 0);  // after the box's new value is taken
});
</script>
"""
