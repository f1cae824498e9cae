"""Workflow definitions (``jobs/*.yaml``): a broken one is refused when read, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from batcher.errors import ConfigError
from batcher.workflows import load_workflows

HEAD = "name: blog\nworkflow_id: 0123456789abcdef01234567-v1\ninputs:\n  text:\n    type: text\n"
FIX = "(name only the listed fields, e.g. {title}; write a literal brace as {{ or }})"

BAD_TEMPLATES = [
    ("'{title} {nope}'", "names {nope}, which is not one of its fields ({title}, {description})"),
    ("'{title.upper}'", "names {title.upper}, which is not one of its fields ({title}, {description})"),
    ("'{0}'", "names {0}, which is not one of its fields ({title}, {description})"),
    ("'{}'", "names {}, which is not one of its fields ({title}, {description})"),
    ("'{title!r}'", "{title!r}: conversions are not supported"),
    ("'{title'", "is not a valid template: expected '}' before end of string"),
    ("'a } b'", "is not a valid template: Single '}' encountered in format string"),
    ("'{title:d}'", "cannot be filled in: Unknown format code 'd' for object of type 'str'"),
    ("'{title:{width}}'", "cannot be filled in: 'width'"),
]


@pytest.mark.parametrize(("template", "expected"), BAD_TEMPLATES)
def test_a_compose_template_that_cannot_be_filled_in_is_refused_when_read(
    tmp_path: Path, template: str, expected: str
) -> None:
    """It loaded, then stopped the run with a KeyError traceback at the first row that used it."""
    path = tmp_path / "blog.yaml"
    path.write_text(
        f"{HEAD}    compose:\n      template: {template}\n"
        "      fields: {title: {required: true}, description: {}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_workflows(tmp_path)
    assert str(caught.value) == f"{path}: inputs.text.compose.template: {expected} {FIX}"


def test_a_template_with_literal_braces_and_a_format_spec_is_fine(tmp_path: Path) -> None:
    """The check refuses only what cannot be filled in: {{ }} and a text format spec are fine."""
    (tmp_path / "blog.yaml").write_text(
        f"{HEAD}    compose:\n      template: '{{{{{{title:>5}}}}}} {{description}}'\n"
        "      fields: {title: {required: true}, description: {}}\n",
        encoding="utf-8",
    )
    [workflow] = load_workflows(tmp_path)
    assert workflow.prepare({"title": "ab", "description": "c"}) == {"text": "{   ab} c"}


@pytest.mark.parametrize("price", [".nan", ".inf", "1" + "0" * 400], ids=["nan", "inf", "huge"])
def test_a_price_that_is_not_a_finite_amount_is_refused_when_read(tmp_path: Path, price: str) -> None:
    """YAML's ``.nan`` and ``.inf`` are floats, and passed the check for a negative price: NaN
    then let every job past ``--budget`` (spent + NaN > budget is never true), and ``status
    --json`` printed ``NaN`` and ``Infinity``, which are not JSON; an integer past a float's range
    was an OverflowError traceback."""
    path = tmp_path / "blog.yaml"
    path.write_text(f"{HEAD}price_usd: {price}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_workflows(tmp_path)
    assert str(caught.value).startswith(f"{path}: price_usd: bad price ")
    assert str(caught.value).endswith(" (a number of USD)")
