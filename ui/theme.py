"""Look of the UI: a calm theme and a little CSS for the header, status line and message boxes."""

from __future__ import annotations

import gradio as gr

# System fonts only: the default theme fonts come from Google Fonts, unreachable on offline machines.
THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="slate",
    neutral_hue="slate",
    font=["system-ui", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)

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
.gl-review-row.gl-selected { background: var(--color-accent-soft); box-shadow: inset 3px 0 0 var(--color-accent); }
#pg-table [role=row].gl-selected [role=gridcell] { background: var(--color-accent-soft); }
.gl-phrase { font-size: 0.8rem; color: var(--body-text-color-subdued); white-space: nowrap; overflow: hidden;
             text-overflow: ellipsis; display: block; }
.gl-pager { text-align: center; font-size: 0.85rem; padding-top: 6px; }
.gl-task { font-size: 0.95rem; }
.gl-info { background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.gl-hidden { display: none !important; }
.gl-keys { font-size: 0.8rem; color: var(--body-text-color-subdued); }
.gl-hover { position: fixed; pointer-events: none; z-index: 1000; border: 3px solid #fff;
            outline: 2px dashed #111; border-radius: 2px; }
#ls-preview img, #pg-result img { cursor: crosshair; }
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

# The review canvas (both tabs), in the page: hovering a detection's row outlines its box on the image (each
# result's message carries the boxes as fractions of the image: ui.detections.boxes_data); the wheel zooms the image
# around the pointer and a drag pans it. The zoom stops where the picture reaches its own pixels (past that, Gradio's
# click position would be wrong) and is kept while a new preview of the same image replaces it (a click's repair),
# not for another task or upload.
CANVAS_JS = """
<script>
(() => {
  const VIEWS = [
    { rows: "#ls-review .gl-review-row", image: "#ls-preview img", boxes: "#ls-kept .gl-boxes",
      index: (row) => Number((row.querySelector("[id^='ls-keep-']") || { id: "" }).id.slice(8) || NaN) },
    { rows: "#pg-table [role=row]", image: "#pg-result img", boxes: "#pg-message .gl-boxes",
      index: (row) => Number(row.getAttribute("aria-rowindex")) - 2 },
  ];
  const ZOOMABLE = VIEWS.map((view) => view.image).join(", ");
  let outline = null, hovered = null;  // the outline and the row it is for
  const clear = () => { if (outline) outline.remove(); outline = null; };
  const hide = () => { clear(); hovered = null; };

  function outlineRow(view, row) {
    clear();
    hovered = [view, row];
    const img = document.querySelector(view.image), data = document.querySelector(view.boxes);
    if (!img || !data || !img.naturalWidth) return;
    const box = JSON.parse(data.dataset.boxes)[view.index(row)];
    if (!box) return;
    const rect = img.getBoundingClientRect();  // the picture inside it: object-fit contain, centred
    const k = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight);
    const left = rect.left + (rect.width - img.naturalWidth * k) / 2;
    const top = rect.top + (rect.height - img.naturalHeight * k) / 2;
    const w = img.naturalWidth * k, h = img.naturalHeight * k;
    outline = document.createElement("div");
    outline.className = "gl-hover";
    Object.assign(outline.style, { left: `${left + box[0] * w - 3}px`, top: `${top + box[1] * h - 3}px`,
                                   width: `${(box[2] - box[0]) * w}px`, height: `${(box[3] - box[1]) * h}px` });
    document.body.appendChild(outline);
  }
  document.addEventListener("mouseover", (event) => {
    for (const view of VIEWS) {
      const row = event.target.closest && event.target.closest(view.rows);
      if (row) return outlineRow(view, row);
    }
    hide();
  });
  document.addEventListener("scroll", () => hovered && outlineRow(...hovered), true);  // follow the page

  const zooms = {};  // by the image's box id: { s, x, y, w, h, source } (scale, shift, the picture's size, whose)
  const boxOf = (img) => img.closest("#ls-preview, #pg-result").id;
  const state = (img) => zooms[boxOf(img)];
  const source = (img) => (img.closest("#ls-preview") ? (document.querySelector("#ls-task") || {}).textContent
                                                      : (document.querySelector("#pg-image img") || {}).src);
  function apply(img, z) {
    img.style.transformOrigin = "0 0";
    img.style.transform = z.s === 1 ? "" : `translate(${z.x}px, ${z.y}px) scale(${z.s})`;
    img.parentElement.style.overflow = "hidden";
  }
  function clamp(img, z) {  // the picture keeps covering its box: no panning off into emptiness
    const w = img.offsetWidth, h = img.offsetHeight;
    z.x = Math.min(0, Math.max(w - w * z.s, z.x));
    z.y = Math.min(0, Math.max(h - h * z.s, z.y));
  }
  document.addEventListener("wheel", (event) => {
    const img = event.target.closest && event.target.closest(ZOOMABLE);
    if (!img || !img.naturalWidth) return;
    event.preventDefault();
    const z = state(img) || { s: 1, x: 0, y: 0 };
    const most = Math.max(1, img.naturalWidth / img.offsetWidth, img.naturalHeight / img.offsetHeight);
    const s = Math.min(most, Math.max(1, z.s * Math.exp(-event.deltaY * 0.002)));
    const rect = img.getBoundingClientRect();
    const lx = (event.clientX - rect.left) / z.s, ly = (event.clientY - rect.top) / z.s;  // the element's own px
    Object.assign(z, { x: z.x + (z.s - s) * lx, y: z.y + (z.s - s) * ly, s, w: img.naturalWidth,
                       h: img.naturalHeight, source: source(img) });
    clamp(img, z);
    zooms[boxOf(img)] = z;
    apply(img, z);
    hide();
  }, { passive: false });

  let drag = null, dragged = false;
  document.addEventListener("mousedown", (event) => {
    const img = event.target.closest && event.target.closest(ZOOMABLE);
    const z = img && state(img);
    dragged = false;
    if (!z || z.s === 1 || event.button !== 0) return;
    drag = { img, z, x: event.clientX, y: event.clientY, x0: z.x, y0: z.y };
    event.preventDefault();  // not the browser's own image drag
  });
  document.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    dragged = dragged || Math.abs(dx) + Math.abs(dy) > 4;
    Object.assign(drag.z, { x: drag.x0 + dx, y: drag.y0 + dy });
    clamp(drag.img, drag.z);
    apply(drag.img, drag.z);
  });
  document.addEventListener("mouseup", () => { drag = null; });
  document.addEventListener("click", (event) => {  // a pan is not a click on the image
    if (dragged && event.target.closest && event.target.closest(ZOOMABLE)) {
      event.stopPropagation();
      event.preventDefault();
    }
    dragged = false;
  }, true);
  // Label Studio tab: a shift-click or a right click on the preview is a negative point (#ls-click-negative says so
  // to the click's handler; Gradio reads it with the click)
  const PREVIEW = "#ls-preview img";
  function negative(flag) {
    const box = document.querySelector("#ls-click-negative textarea, #ls-click-negative input");
    if (!box || box.value === (flag ? "negative" : "")) return;
    box.value = flag ? "negative" : "";
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest(PREVIEW)) negative(event.shiftKey);
  }, true);
  document.addEventListener("contextmenu", (event) => {
    const img = event.target.closest && event.target.closest(PREVIEW);
    if (!img) return;
    event.preventDefault();
    img.dispatchEvent(new MouseEvent("click", { bubbles: true, clientX: event.clientX, clientY: event.clientY,
                                                 shiftKey: true }));
  });
  document.addEventListener("load", (event) => {  // a new preview of the same image (a click's repair): same zoom
    const img = event.target;
    if (!(img instanceof HTMLImageElement) || !img.matches(ZOOMABLE)) return;
    const z = state(img);
    if (!z) return;
    if (z.w !== img.naturalWidth || z.h !== img.naturalHeight || z.source !== source(img)) {
      Object.assign(z, { s: 1, x: 0, y: 0 });  // another task or upload starts unzoomed
    }
    apply(img, z);
  }, true);
})();
</script>
"""
