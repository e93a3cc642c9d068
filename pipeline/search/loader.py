"""Reading `search_spaces/<name>.yaml` or a path as YAML (a key given twice is an error, where
PyYAML would keep the last) for `pipeline.search.parser`."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.search.parser import SpaceParser
from pipeline.search.types import SearchSpace, SearchSpaceError

REPO_ROOT = Path(__file__).resolve().parents[2]
SEARCH_SPACE_DIR = REPO_ROOT / "search_spaces"


def available_search_spaces() -> list[str]:
    return sorted(path.stem for path in SEARCH_SPACE_DIR.glob("*.yaml"))


def load_search_space(name_or_path: str | Path) -> SearchSpace:
    """Load `search_spaces/<name>.yaml` (a bare name) or any YAML path, and validate it all."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        path = SEARCH_SPACE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise SearchSpaceError(
                f"no search space named {text!r}; available: {', '.join(available_search_spaces())}"
            )
    resolved = path.resolve()
    source = str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else text
    try:
        raw_text = path.read_text()
    except OSError as err:
        raise SearchSpaceError(f"{source}: cannot read ({err.strerror})") from err
    try:
        raw = yaml.load(raw_text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise SearchSpaceError(f"{source}: not valid YAML ({' '.join(str(err).split())})") from err
    return SpaceParser(source).parse(raw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)
