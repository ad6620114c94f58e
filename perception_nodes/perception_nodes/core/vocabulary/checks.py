"""What the vocabulary accepts, checked without the CLIP model: labels (non-empty, whitespace-
normalised, within :class:`VocabularyLimits`, no two equal after :func:`fold`) and prompt
templates (each puts the phrase exactly once under :func:`fill_template`). Violations raise
:class:`VocabularyError`. The CLIP token limit needs the model: ``Vocabulary.check``.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass


class VocabularyError(ValueError):
    """A vocabulary change was refused (the vocabulary is left unchanged)."""


@dataclass
class VocabularyLimits:
    """Limits enforced on every change (violations raise :class:`VocabularyError`)."""

    max_entries: int = 10_000
    max_phrase_chars: int = 256
    max_templates: int = 64
    #: a longer template cannot leave room for a phrase in CLIP's 77 tokens; refused before its
    #: tokens are counted (1 MB of text took ~1 CPU-s to tokenize)
    max_template_chars: int = 1024


def fold(phrase: str) -> str:
    """Case- and space-folded form used to detect duplicates (``"Red  Cup"`` == ``"red cup"``)."""
    return " ".join(unicodedata.normalize("NFKC", phrase).casefold().split())


_PLACEHOLDER_PROBE = "\x00phrase\x00"  # cannot occur in a template: marks where the phrase lands


def fill_template(template: str, phrase: str) -> str:
    """The prompt of ``phrase`` under ``template`` (the ONE formatting the vocabulary uses)."""
    return template.format(phrase)


def check_templates(templates: object, limits: VocabularyLimits | None = None) -> tuple[str, ...]:
    """``templates`` as a tuple, or VocabularyError: a non-empty list of strings that each put
    the phrase exactly once when filled by :func:`fill_template` (``'{{}}'`` puts it nowhere)."""
    limits = limits or VocabularyLimits()
    if isinstance(templates, str) or not isinstance(templates, (list, tuple)) or not templates:
        raise VocabularyError(
            "templates must be a non-empty list of strings, each containing '{}' once"
        )
    if len(templates) > limits.max_templates:
        raise VocabularyError(
            f"{len(templates)} templates exceed the limit of {limits.max_templates}"
        )
    for t in templates:
        if not isinstance(t, str):
            raise VocabularyError(f"template {t!r} must be a string")
        if len(t) > limits.max_template_chars:
            raise VocabularyError(
                f"template {t[:40]!r}... has {len(t)} characters; "
                f"the limit is {limits.max_template_chars}"
            )
        _check_placeholder_field(t)
        try:
            filled = fill_template(t, _PLACEHOLDER_PROBE)
        except (IndexError, KeyError, ValueError) as exc:
            raise VocabularyError(
                f"template {t!r} must contain '{{}}' exactly once (where the phrase goes); "
                f"it is not a valid format string: {exc}"
            ) from exc
        if filled.count(_PLACEHOLDER_PROBE) != 1:
            raise VocabularyError(
                f"template {t!r} must contain '{{}}' exactly once (where the phrase goes); "
                f"it formats to {fill_template(t, 'x')!r}"
            )
    return tuple(templates)


def _check_placeholder_field(template: str) -> None:
    """VocabularyError for a replacement field other than ``{}`` / ``{0}``: with a format spec,
    conversion, attribute or index (``'{:>9}'``, ``'{!r}'``, ``'{0.upper}'``). Checked by parsing,
    without formatting: a width such as ``'{:>2000000000}'`` made the check itself build a 2 GB
    string (1.9 GB peak memory, 2 CPU-s per template), and ``'{0.__class__.x}'`` raised an
    AttributeError the parameter check did not expect."""
    try:
        fields = [f for f in string.Formatter().parse(template) if f[1] is not None]
    except ValueError:
        return  # not a valid format string: refused where it is filled, with the reason
    for _, name, spec, conversion in fields:
        if name not in ("", "0") or spec or conversion:
            field = (
                f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
            raise VocabularyError(
                f"template {template[:60]!r} must contain '{{}}' exactly once (where the phrase "
                f"goes), plain: no format spec, conversion, attribute or index ({field[:60]!r})"
            )


def check_labels(labels: object, limits: VocabularyLimits | None = None) -> list[str]:
    """Whitespace-normalised ``labels``, or VocabularyError: a non-empty list of non-empty strings
    within the limits, no two equal ignoring case and spaces (see :func:`fold`)."""
    limits = limits or VocabularyLimits()
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise VocabularyError(f"labels must be a list of strings, got {type(labels).__name__}")
    if not labels:
        raise VocabularyError("empty label list: the vocabulary needs at least one entry")
    if len(labels) > limits.max_entries:
        raise VocabularyError(f"{len(labels)} entries exceed the limit of {limits.max_entries}")
    out = [normalised_phrase(p, i, limits) for i, p in enumerate(labels)]
    check_unique(out)
    return out


def check_vocabulary(
    labels: object, templates: object, limits: VocabularyLimits | None = None
) -> None:
    """VocabularyError for a vocabulary that :meth:`Vocabulary.set` would refuse, as far as it
    can be told without the CLIP model (token counts need it: :meth:`Vocabulary.check`)."""
    check_templates(templates, limits)
    check_labels(labels, limits)


def normalised_phrase(phrase: object, index: int, limits: VocabularyLimits) -> str:
    """Entry ``index`` with runs of whitespace collapsed, or VocabularyError (not a string,
    empty, or longer than ``limits.max_phrase_chars``)."""
    if not isinstance(phrase, str):
        raise VocabularyError(f"entry {index} must be a string, got {type(phrase).__name__}")
    text = " ".join(phrase.split())
    if not text:
        raise VocabularyError(f"entry {index} is empty or whitespace only")
    if len(text) > limits.max_phrase_chars:
        raise VocabularyError(
            f"entry {index} ({text[:40]!r}...) has {len(text)} characters; "
            f"the limit is {limits.max_phrase_chars}"
        )
    return text


def check_unique(names: list[str]) -> None:
    """VocabularyError naming the first entry equal to an earlier one after :func:`fold`."""
    seen: dict[str, str] = {}
    for name in names:
        k = fold(name)
        if k in seen:
            raise VocabularyError(
                f"duplicate entry {name!r} (same as {seen[k]!r} ignoring case and spaces)"
            )
        seen[k] = name
