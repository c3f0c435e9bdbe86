"""Suite files as YAML text: a safe loader that refuses a key given twice, and YAML errors in
one line. Imports no torch (the suite vocabulary stays a leaf)."""

from __future__ import annotations

import yaml

__all__ = ["safe_load", "yaml_error"]


def yaml_error(e: Exception) -> str:
    """A YAML parse error in one line: where (line, column) and what, with the fix for tabs."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = " ".join(str(getattr(e, "problem", None) or e).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    hint = "; indent with spaces: YAML does not allow tabs" if "'\\t'" in problem else ""
    return f"not valid YAML{where}: {problem}{hint}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping naming a key twice (`name: a` then `name: b`):
    plain YAML keeps the last silently, so a suite would run under a name its author did not
    mean."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.get(key)
                except TypeError:  # an unhashable key: SafeLoader says so itself
                    continue
                if line is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (first at line {line}); "
                        "YAML would keep only the last one silently", key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str):
    """yaml.safe_load that refuses duplicate keys (yaml.YAMLError naming the key and line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
