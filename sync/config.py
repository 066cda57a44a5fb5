"""A Label Studio labeling config, reduced to what groundlabel needs: which image, which prompt, which labels."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

from label_studio_sdk.label_interface import LabelInterface

from pipeline import LabelMap, Options, SettingsError
from pipeline.options import label_thresholds

from .errors import ConfigError
from .regions import BY_TAG, BY_TYPE, FILLED, VIDEO_RECTANGLE, tag_list

# Number tags whose value sets a threshold, matched by name ("box_threshold", "text-threshold", "BoxThreshold").
_THRESHOLD_NAMES = {"box": "boxthreshold", "text": "textthreshold", "nms": "nmsthreshold"}
# The <Label> attribute that holds a label's own box threshold.
LABEL_THRESHOLD = "box_threshold"
# The config part of a model version: "-c" and six hex digits at its end (``ProjectConfig.version``).
_CONFIG_PART = re.compile(r"-c[0-9a-f]{6}$")


@dataclass(frozen=True)
class LabelsControl:
    """One labels tag groundlabel fills (``regions.FILLED``: RectangleLabels, BrushLabels, ...): its name (``from_name``), result type and labels."""

    name: str
    type: str  # its regions' result type: a key of regions.BY_TYPE that groundlabel fills
    labels: tuple[str, ...]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)
    colors: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # label -> its background
    # label -> its own box threshold, from <Label value="cat" box_threshold="0.4"/>
    thresholds: dict[str, float] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class SmartTool:
    """One smart KeyPointLabels / RectangleLabels tag: the annotator's click or box on it is a mask prompt."""

    name: str
    type: str  # its results' type: a key of regions.BY_TYPE marked smart
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ProjectConfig:
    """What a labeling config asks for, e.g. Label Studio's Grounding DINO example: an Image, a TextArea prompt,
    RectangleLabels and BrushLabels over that image.

    ``aliases`` come from ``predicted_values="cat,kitten"`` on a Label: prompt phrases that mean that label.
    Thresholds come from ``<Number name="box_threshold" defaultValue="0.3">`` tags when the config has them, and a
    label's own box threshold from ``box_threshold="0.4"`` on its ``<Label>`` (what ``sync.quality --apply`` writes).
    ``smart_tools`` are KeyPointLabels / RectangleLabels marked ``smart="true"``: prompts for the segmenter only,
    so text-prompt boxes go to a plain RectangleLabels beside them.
    """

    image: str  # the Image tag's name: every region's ``to_name``
    image_key: str  # the task data field it shows ("image" for value="$image")
    controls: tuple[LabelsControl, ...]
    prompt: str | None = None  # the TextArea's name: its text is the interactive prompt
    box_threshold: float | None = None
    text_threshold: float | None = None
    nms_threshold: float | None = None
    # "box" / "text" / "nms" -> the name of the Number tag that sets that threshold
    threshold_tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    smart_tools: tuple[SmartTool, ...] = ()
    xml: str = field(default="", repr=False, compare=False)
    video: bool = False  # ``image`` names a <Video>: its one control is a VideoRectangle, one region per track
    framerate: str = "24"  # the <Video>'s framerate attribute (a number or "$field"), Label Studio's default 24

    @classmethod
    def parse(cls, xml: str | None) -> ProjectConfig:
        """Read ``xml`` with label-studio-sdk's label interface; raise ``ConfigError`` naming what is missing."""
        if not isinstance(xml, str) or not xml.strip():
            raise ConfigError("The project has no labeling config.")
        try:
            interface = LabelInterface(xml)
        except Exception as error:  # the SDK raises lxml, XML-syntax and its own validation errors
            raise ConfigError(f"The labeling config is not valid: {error}") from None
        images = {obj.name: obj for obj in interface.objects if obj.tag == "Image"}
        if not images and any(obj.tag == "Video" for obj in interface.objects):
            return cls._parse_video(interface, xml)
        if not images:
            raise ConfigError('The labeling config has no <Image> tag: add <Image name="image" value="$image"/>.')
        on_images = [c for c in interface.controls if any(t in images for t in c.to_name)]
        smart = [c for c in on_images if c.tag in BY_TAG and BY_TAG[c.tag].smart and _is_smart(c)]
        filled = {region.tag for region in FILLED}
        usable = [c for c in on_images if c.tag in filled and c.name not in {s.name for s in smart}]
        if not usable:
            raise ConfigError(
                f"The labeling config has no {tag_list(FILLED)} tag on an <Image>"
                + (" besides its smart tools, which only prompt the segmenter" if smart else "")
                + ': add e.g. <BrushLabels name="mask" toName="image"><Label value="cat"/></BrushLabels>.'
            )
        image = images[next(t for t in usable[0].to_name if t in images)]
        controls = tuple(_labels_control(c) for c in usable if image.name in c.to_name)
        empty = [c.name for c in controls if not c.labels]
        if empty:
            raise ConfigError(f"The labels tag(s) {', '.join(empty)} have no <Label value=...> children.")
        on_image = [c for c in interface.controls if image.name in c.to_name]
        prompts = [c.name for c in on_image if c.tag == "TextArea"]
        thresholds = _threshold_tags(on_image)
        return cls(
            image=image.name,
            image_key=image.value_name or "image",
            controls=controls,
            prompt="prompt" if "prompt" in prompts else next(iter(prompts), None),
            box_threshold=thresholds.get("box", (None, None))[1],
            text_threshold=thresholds.get("text", (None, None))[1],
            nms_threshold=thresholds.get("nms", (None, None))[1],
            threshold_tags={kind: name for kind, (name, _) in thresholds.items()},
            smart_tools=tuple(
                SmartTool(c.name, BY_TAG[c.tag].type, tuple(c.labels)) for c in smart if image.name in c.to_name
            ),
            xml=xml,
        )

    @classmethod
    def _parse_video(cls, interface: LabelInterface, xml: str) -> ProjectConfig:
        """A <Video> with a <VideoRectangle> on it and the <Labels> beside it (Label Studio's video tracking
        template): one control, named after the VideoRectangle, with every label of those Labels tags."""
        videos = {obj.name: obj for obj in interface.objects if obj.tag == "Video"}
        boxes = [c for c in interface.controls if c.tag == VIDEO_RECTANGLE.tag and set(c.to_name) & set(videos)]
        if not boxes:
            raise ConfigError(
                'The labeling config has a <Video> but no <VideoRectangle> on it: add <VideoRectangle name="box" '
                'toName="video"/> and <Labels name="labels" toName="video"> with <Label value=...> children.'
            )
        video = videos[next(t for t in boxes[0].to_name if t in videos)]
        on_video = [c for c in interface.controls if video.name in c.to_name]
        labels = [c for c in on_video if c.tag == "Labels"]
        if not any(c.labels for c in labels):
            raise ConfigError(
                f'The <Video> {video.name!r} has no <Labels> with <Label value=...> children: add <Labels name="labels" '
                f'toName="{video.name}"><Label value="car"/></Labels>; its labels name the tracks.'
            )
        merged = [_labels_control(c, type=VIDEO_RECTANGLE.type) for c in labels]
        control = LabelsControl(
            name=boxes[0].name,
            type=VIDEO_RECTANGLE.type,
            labels=tuple(dict.fromkeys(label for c in merged for label in c.labels)),
            aliases={k: v for c in reversed(merged) for k, v in c.aliases.items()},
            colors={k: v for c in reversed(merged) for k, v in c.colors.items()},
            thresholds={k: v for c in reversed(merged) for k, v in c.thresholds.items()},
        )
        prompts = [c.name for c in on_video if c.tag == "TextArea"]
        thresholds = _threshold_tags(on_video)
        return cls(
            image=video.name,
            image_key=video.value_name or "video",
            controls=(control,),
            prompt="prompt" if "prompt" in prompts else next(iter(prompts), None),
            box_threshold=thresholds.get("box", (None, None))[1],
            text_threshold=thresholds.get("text", (None, None))[1],
            nms_threshold=thresholds.get("nms", (None, None))[1],
            threshold_tags={kind: name for kind, (name, _) in thresholds.items()},
            xml=xml,
            video=True,
            framerate=str(video.attr.get("framerate") or "24"),
        )

    def framerate_for(self, task_data: dict) -> float:
        """The frame rate Label Studio numbers this task's video frames at, as its editor reads the <Video>'s
        framerate: a number or a ``$field`` of the task, 24 when unusable, ``1 / rate`` for a rate below 1."""
        value = self.framerate
        if value.startswith("$"):
            value = str(task_data.get(value[1:], ""))
        try:
            rate = float(value)
        except ValueError:
            return 24.0
        if not rate > 0:
            return 24.0
        return 1 / rate if rate < 1 else rate

    @property
    def wants_boxes(self) -> bool:
        """Regions without masks (rectangles): the detector's boxes are enough."""
        return any(not BY_TYPE[c.type].masks for c in self.controls)

    @property
    def wants_masks(self) -> bool:
        """Regions with masks (brush, polygon): the segmenter has to run."""
        return any(BY_TYPE[c.type].masks for c in self.controls)

    def with_output(self, output: str, segmenter: str | None) -> ProjectConfig:
        """This config with only the labels tags that ``output`` (one of ``sync.settings.OUTPUTS``) fills: "boxes" / "masks"
        keep the tags of that kind (all of them when the config has none of it, so nothing is lost), "auto" is
        "masks" with a segmenter and "boxes" without one, "both" keeps every tag."""
        if output == "auto":
            output = "masks" if segmenter else "boxes"
        if output == "both":
            return self
        kept = tuple(c for c in self.controls if BY_TYPE[c.type].masks == (output == "masks"))
        return replace(self, controls=kept) if kept else self

    @property
    def digest(self) -> str:
        """Six hex digits naming what shapes our regions: the image's name and each filled tag's name, type,
        labels and ``predicted_values``. Colours, prompts and smart tools do not change what we write."""
        parts = [self.image] + [
            f"{c.name}|{c.type}|{','.join(c.labels)}|{sorted(c.aliases.items())}" for c in self.controls
        ]
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:6]

    def version(self, model_version: str) -> str:
        """``model_version`` with this config's ``-c<digest>`` at its end (replacing another config's), so a new
        tag name, type, label or alias makes Label Studio predict again rather than keep regions it cannot show."""
        return f"{_CONFIG_PART.sub('', model_version)}-c{self.digest}"

    @property
    def label_thresholds(self) -> dict[str, float]:
        """Each label's own box threshold from its ``<Label box_threshold=...>``; the first control's wins."""
        found: dict[str, float] = {}
        for control in self.controls:
            for label, threshold in control.thresholds.items():
                found.setdefault(label, threshold)
        return found

    def with_label_thresholds(self, options: Options) -> Options:
        """``options`` with this config's per-label thresholds under its own (a command line's or the UI's win)."""
        if not self.label_thresholds:
            return options
        return replace(options, label_thresholds={**self.label_thresholds, **dict(options.label_thresholds)})

    def xml_with_label_thresholds(self, thresholds: dict[str, float]) -> str:
        """This config's XML with ``box_threshold="t"`` on the ``<Label>`` of each label in ``thresholds``, in every
        labels tag groundlabel fills (``sync.quality --apply`` stores calibrated thresholds so); the rest untouched."""
        from lxml import etree

        root = etree.fromstring(self.xml.encode())
        filled = {control.name for control in self.controls}
        for element in root.iter():
            if element.get("name") in filled:
                for label in element.iter("Label"):
                    if label.get("value") in thresholds:
                        label.set(LABEL_THRESHOLD, f"{thresholds[label.get('value')]:g}")
        return etree.tostring(root, encoding="unicode")

    @property
    def labels(self) -> list[str]:
        """Every label of every control, each once, in config order."""
        return list(dict.fromkeys(label for control in self.controls for label in control.labels))

    def label_colors(self) -> dict[str, tuple[int, int, int]]:
        """Each label's colour as Label Studio shows it (its ``background``: a name or hex), where the config gives
        one that reads as a colour; the first control that colours a label wins."""
        from PIL import ImageColor

        found: dict[str, tuple[int, int, int]] = {}
        for control in self.controls:
            for label, color in control.colors.items():
                try:
                    found.setdefault(label, ImageColor.getrgb(color)[:3])
                except ValueError:
                    continue
        return found

    def label_map(self) -> LabelMap:
        """The pipeline's mapping from prompt phrases to this project's labels (``predicted_values`` as aliases)."""
        aliases: dict[str, list[str]] = {}
        for control in self.controls:
            for label, phrases in control.aliases.items():
                aliases.setdefault(label, []).extend(phrases)  # LabelMap keeps the first label per phrase
        return LabelMap(labels=self.labels, aliases=aliases)

    @property
    def default_prompt(self) -> str:
        """A prompt when the user gave none: every label and its ``predicted_values``, as phrases."""
        phrases = list(self.labels)
        for control in self.controls:
            for label_phrases in control.aliases.values():
                phrases.extend(label_phrases)
        return ". ".join(dict.fromkeys(phrases))

    def image_url(self, task_data: dict) -> str:
        """The image reference in a task's data (an upload path, local-files URL, http(s) or cloud URI)."""
        value = task_data.get(self.image_key)
        if not isinstance(value, str) or not value.strip():
            what, tag = ("video", "<Video>") if self.video else ("image", "<Image>")
            raise ConfigError(
                f"The task has no {what} in data[{self.image_key!r}] (the {tag} tag reads ${self.image_key}); "
                f"its data fields are {sorted(task_data)}."
            )
        return value.strip()

    def prompt_from(self, results: list[dict] | None) -> str | None:
        """The prompt text in interactive context results: the TextArea result with this config's prompt name
        (matched by ``from_name``, never by position), or None."""
        for item in results or []:
            if item.get("from_name") == self.prompt and item.get("type") == "textarea":
                texts = (item.get("value") or {}).get("text") or []
                text = ". ".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
                if text:
                    return text
        return None

    def thresholds_from(self, results: list[dict] | None) -> dict[str, float]:
        """Thresholds set in the labeling UI: ``{"box": 0.3, "text": 0.25, "nms": 0.5}`` for Number results present."""
        found = {}
        for kind, name in self.threshold_tags.items():
            for item in results or []:
                number = (item.get("value") or {}).get("number")
                if item.get("from_name") == name and isinstance(number, (int, float)):
                    found[kind] = float(number)
        return found


def _is_smart(control) -> bool:
    """Label Studio's rule: ``smart="true"`` (or ``smartOnly``) on the tag or on any of its labels."""
    tags = [control.attr, *(tag.attr for tag in (control.labels_attrs or {}).values())]
    return any(str(attrs.get(key, "")).lower() == "true" for attrs in tags for key in ("smart", "smartOnly"))


def _labels_control(control, type: str | None = None) -> LabelsControl:
    aliases = {}
    for value, tag in (control.labels_attrs or {}).items():
        phrases = [p.strip() for p in str(tag.attr.get("predicted_values", "")).split(",") if p.strip()]
        if phrases:
            aliases[value] = tuple(phrases)
    colors = {
        value: str(tag.attr["background"])
        for value, tag in (control.labels_attrs or {}).items()
        if tag.attr.get("background")
    }
    thresholds = {}
    for value, tag in (control.labels_attrs or {}).items():
        if tag.attr.get(LABEL_THRESHOLD) not in (None, ""):
            try:
                thresholds[value] = label_thresholds({value: tag.attr[LABEL_THRESHOLD]})[0][1]
            except SettingsError as error:
                raise ConfigError(f"<Label value={value!r}> in {control.name!r}: {error}") from None
    return LabelsControl(
        name=control.name,
        type=type or BY_TAG[control.tag].type,
        labels=tuple(control.labels),
        aliases=aliases,
        colors=colors,
        thresholds=thresholds,
    )


def _threshold_tags(controls) -> dict[str, tuple[str, float | None]]:
    """ "box"/"text"/"nms" -> (Number tag name, its defaultValue or None)."""
    found = {}
    for control in controls:
        if control.tag != "Number":
            continue
        key = "".join(ch for ch in control.name.lower() if ch.isalnum())
        for kind, wanted in _THRESHOLD_NAMES.items():
            if key == wanted and kind not in found:
                default = control.attr.get("defaultValue")
                try:
                    found[kind] = (control.name, float(default) if default not in (None, "") else None)
                except ValueError:
                    raise ConfigError(
                        f"<Number name={control.name!r}> has defaultValue={default!r}, not a number."
                    ) from None
    return found
