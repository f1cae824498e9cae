"""Every known shape of a completed job's ``output`` yields the same outputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batcher.outputs import MAX_OUTPUTS, OutputRef, malformed, parse_outputs, parse_outputs_capped

URL = "https://images.segmind.com/out/abc.png"
CURRENT = [{"keyname": "sketch_output", "value": {"data": URL, "type": "image"}}]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (json.dumps(CURRENT), [OutputRef("sketch_output", URL, kind="image")]),
        (CURRENT, [OutputRef("sketch_output", URL, kind="image")]),
        (json.dumps({"image_output": URL}), [OutputRef("image_output", URL)]),
        ({"image_output": URL}, [OutputRef("image_output", URL)]),
        (URL, [OutputRef("output", URL)]),
        ("", []),
        (None, []),
        ("[]", []),
        (json.dumps([{"keyname": "a", "value": URL}]), [OutputRef("a", URL)]),
        (
            json.dumps(
                [
                    {"keyname": "img", "value": {"data": URL, "type": "image"}},
                    {"keyname": "prompt", "value": {"data": "a lighthouse at dusk", "type": "text"}},
                ]
            ),
            [
                OutputRef("img", URL, kind="image"),
                OutputRef("prompt", text="a lighthouse at dusk", kind="text"),
            ],
        ),
        ({"images": [URL, URL + "?2"]}, [OutputRef("images_0", URL), OutputRef("images_1", URL + "?2")]),
        (json.dumps({"a": URL, "b": URL}), [OutputRef("a", URL)]),  # the same file once
    ],
)
def test_every_known_shape_is_read(output: Any, expected: list[OutputRef]) -> None:
    assert parse_outputs(output) == expected


@pytest.mark.parametrize(
    "output",
    [
        json.dumps(CURRENT)[:40],  # cut inside the URL
        json.dumps(CURRENT)[:-2],  # cut after it: its URL whole, the JSON still broken
        json.dumps({"image_output": URL})[:-1],
        "[" * 100_000,  # past the parser's recursion limit
        "{image_output: " + URL + "}",
    ],
    ids=["in-the-url", "after-the-url", "flat", "deep", "not-quoted"],
)
def test_a_string_that_opens_as_json_but_is_not_names_no_output_and_says_so(output: str) -> None:
    """It was read as a text output: a .txt of broken JSON saved in place of the image, and
    the job completed. It names no output now (the job is polled again), and ``malformed``
    hands back its text for the error; an empty output, a bare URL or text is not malformed."""
    assert parse_outputs(output) == [] and parse_outputs(output.encode()) == []
    assert malformed(output) == output.strip()
    for fine in ("", "  ", URL, "a caption", json.dumps(CURRENT), "[]", CURRENT, None):
        assert malformed(fine) is None, fine


def test_refs_survive_a_round_trip_through_the_ledger() -> None:
    ref = OutputRef("img", URL, kind="image")
    assert OutputRef.from_json(json.loads(json.dumps(ref.to_json()))) == ref


def test_a_hostile_answer_is_bounded_and_says_so() -> None:
    refs, cut = parse_outputs_capped({f"k{i}": f"{URL}?{i}" for i in range(5 * MAX_OUTPUTS)})
    assert len(refs) == MAX_OUTPUTS and cut
    refs, cut = parse_outputs_capped([f"{URL}?{i % MAX_OUTPUTS}" for i in range(5 * MAX_OUTPUTS)])
    assert len(refs) == MAX_OUTPUTS and not cut  # repeats are not more outputs
    refs, cut = parse_outputs_capped([f"{URL}?{i}" for i in range(MAX_OUTPUTS)])
    assert len(refs) == MAX_OUTPUTS and not cut
    deep: Any = URL
    for _ in range(100):
        deep = [deep]
    assert parse_outputs(deep) == []  # too deep to be a real answer


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_any_json_parses_without_raising_and_a_string_form_reads_the_same(value: Any) -> None:
    refs = parse_outputs(value)
    assert len(refs) <= MAX_OUTPUTS
    assert all((r.url is None) != (r.text is None) for r in refs)
    if not isinstance(value, str):
        assert parse_outputs(json.dumps(value)) == refs


@given(st.lists(st.sampled_from(["current", "flat", "parsed"]), min_size=1, max_size=3), st.integers(1, 5))
def test_generated_shapes_find_every_url(shapes: list[str], n: int) -> None:
    urls = [f"https://cdn.example/{i}.png" for i in range(n)]
    for shape in shapes:
        if shape == "current":
            out: Any = json.dumps(
                [{"keyname": f"k{i}", "value": {"data": u, "type": "image"}} for i, u in enumerate(urls)]
            )
        elif shape == "flat":
            out = json.dumps({f"k{i}": u for i, u in enumerate(urls)})
        else:
            out = [{"keyname": f"k{i}", "value": {"data": u, "type": "image"}} for i, u in enumerate(urls)]
        assert [r.url for r in parse_outputs(out)] == urls
