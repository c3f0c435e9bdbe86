"""Suite files as YAML text: a safe loader that refuses a key given twice, and YAML errors in
one line. Imports no torch (the suite vocabulary stays a leaf)."""

from __future__ import annotations

import re

import yaml

__all__ = ["number_hint", "safe_load", "with_number_hint", "yaml_error"]

# A number in e-notation as YAML 1.2 (and Python) reads it, which PyYAML (YAML 1.1) leaves a
# string unless the mantissa has a dot and the exponent a sign: 1e3, 1.0e9, 1e-3, .5e2.
_E_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def number_hint(value) -> str:
    """For a string PyYAML read from e-notation without a dot or an exponent sign ('1.0e9',
    '1e-3'): "; YAML reads 1.0e9 as a string, not a number: write 1.0e+9 (...)"; else ""."""
    if not isinstance(value, str) or not _E_NUMBER.fullmatch(value.strip()):
        return ""
    if not isinstance(yaml.safe_load(value), str):  # a number to PyYAML: it was quoted
        return ""
    mantissa, _, exponent = value.strip().lower().partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    mantissa = mantissa.lstrip("+-")
    mantissa = ("0" + mantissa if mantissa.startswith(".") else mantissa)
    mantissa = mantissa + ("0" if mantissa.endswith(".") else "" if "." in mantissa else ".0")
    exponent = exponent if exponent[:1] in "+-" else "+" + exponent
    return (f"; YAML reads {value} as a string, not a number: write {sign}{mantissa}e{exponent} "
            "(PyYAML, a YAML 1.1 reader, needs a dot in the mantissa and a sign in the exponent)")


def _strings(tree):
    if isinstance(tree, str):
        yield tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _strings(v)


def with_number_hint(message: str, tree) -> str:
    """`message` with :func:`number_hint` appended for the first e-notation string of `tree`
    (a parsed suite or part of it) that the message quotes (`got '1.0e9'`, `is '1e3'`)."""
    for text in _strings(tree):
        hint = number_hint(text)
        if hint and repr(text) in message:
            return message + hint
    return message


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
