"""Which slides to evaluate: slide lists (files, packaged lists, comma-separated stems) and CAMELYON16's test set.

CAMELYON16's test set has 130 slides, ``test_001`` .. ``test_130``. The challenge's README and NCRF
leave two out, which gives the 128 slides :data:`CAMELYON16_TEST` and the packaged list
``camelyon16_test`` (``configs/camelyon16_test.txt``) hold:

- ``test_049``: a duplicate of another slide of the test set;
- ``test_114``: its lesion annotations are not exhaustive.
"""

from __future__ import annotations

from pathlib import Path

from mrseg.core.errors import ConfigError, DataError

#: Slides of CAMELYON16's test set that the challenge's evaluation leaves out, and why.
CAMELYON16_TEST_EXCLUDED: dict[str, str] = {
    "test_049": "duplicate slide",
    "test_114": "non-exhaustive annotations",
}
#: The 128 evaluated slides of CAMELYON16's test set.
CAMELYON16_TEST: tuple[str, ...] = tuple(
    stem for stem in (f"test_{n:03d}" for n in range(1, 131)) if stem not in CAMELYON16_TEST_EXCLUDED
)


def packaged_lists_dir() -> Path:
    """The folder of mrseg's packaged configs and slide lists (``mrseg/configs``)."""
    return Path(__file__).resolve().parents[1] / "configs"


def packaged_list_names() -> list[str]:
    """Names of the packaged slide lists (``configs/*.txt``, without the suffix)."""
    return sorted(p.stem for p in packaged_lists_dir().glob("*.txt"))


def read_slide_list_file(path: Path) -> tuple[str, ...]:
    """Slide stems of a list file: one per line; blank lines and ``#`` comments ignored; a suffix is dropped.

    Raises
    ------
    DataError
        The file cannot be read or lists no slide.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read slide list ({error})") from None
    stems = [Path(line.split("#", 1)[0].strip()).stem for line in lines]
    stems = [s for s in stems if s]
    if not stems:
        raise DataError(f"{path}: the slide list names no slide")
    return tuple(dict.fromkeys(stems))


def resolve_slides(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The slide stems of ``--slides`` values, in order, without repeats.

    Each value is a list file (an existing path), the name of a packaged list (``camelyon16_test``),
    or comma-separated stems (``test_001,test_002``).

    Raises
    ------
    ConfigError
        A value that names no slide.
    DataError
        An unreadable or empty list file.
    """
    stems: list[str] = []
    for value in values:
        path = Path(value)
        packaged = packaged_lists_dir() / f"{value}.txt"
        if path.is_file():
            stems += read_slide_list_file(path)
        elif "/" not in value and packaged.is_file():
            stems += read_slide_list_file(packaged)
        else:
            names = [s.strip() for s in value.split(",") if s.strip()]
            if not names:
                raise ConfigError(
                    f"--slides {value!r} names no slide (packaged lists: {', '.join(packaged_list_names())})"
                )
            stems += names
    return tuple(dict.fromkeys(stems))


__all__ = [
    "CAMELYON16_TEST",
    "CAMELYON16_TEST_EXCLUDED",
    "packaged_list_names",
    "packaged_lists_dir",
    "read_slide_list_file",
    "resolve_slides",
]
