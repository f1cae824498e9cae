"""``batcher report``: one self-contained, script-free HTML page, rendered for real in headless Chromium."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image, ImageDraw

from batcher.cli_inspect import add_report_parser, main_report
from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.manifest import MAX_ID_LENGTH
from batcher.report import build_report
from batcher.report_chart import histogram
from batcher.workflows import WorkflowRegistry

from .ledger_builder import PRICES, LedgerBuilder, every_branch
from .support import SPEED, run, settings_for, sketch_rows, write_jsonl

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_ERROR = (
    "the provider reported FAILED: <script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
)
HOSTILE_TITLE = (
    "Title: <script>document.title='pwned2'</script> & friends\n\nDescription: <b>bold</b> claims\n"
)


def _picture(path: Path, seed: int, size: tuple[int, int] = (640, 480)) -> Path:
    """A distinct picture (sky, ground, a sun, a house) so thumbnails are visibly different."""
    img = Image.new("RGB", size, (90 + seed * 20 % 160, 160, 230))
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.rectangle((0, h * 2 // 3, w, h), fill=(60, 150 - seed * 9 % 80, 70))
    draw.ellipse((w - 160, 40, w - 60, 140), fill=(250, 210, 60))
    x = 80 + seed * 37 % (w - 300)
    draw.rectangle((x, h // 2, x + 160, h * 2 // 3 + 20), fill=(200, 120 + seed * 13 % 100, 90))
    draw.polygon([(x - 20, h // 2), (x + 80, h // 3), (x + 180, h // 2)], fill=(150, 40, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _sketch(source: Path, target: Path) -> Path:
    """An output: the input as a grey pencil-ish line drawing."""
    with Image.open(source) as img:
        grey = img.convert("L").point(lambda v: 255 if v > 120 else 60)
    target.parent.mkdir(parents=True, exist_ok=True)
    grey.save(target)
    return target


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run as the engine leaves it: run/ledger.jsonl, outputs in run/outputs/, paths relative to tmp."""
    run = tmp_path / "run"
    b = LedgerBuilder().run()
    b.invalid("row-9", 9, "input_image", "local file not found: <script>alert(9)</script>.png", "give a file")
    for i in range(6):
        job = f"sketch-{i:02d}"
        src = _picture(tmp_path / "inputs" / f"photo-{i}.png", i)
        out = _sketch(src, run / "outputs" / job / "sketch_output.png")
        b.tick(1).submit(job, "sketch", {"input_image": str(src)}, line=i + 1).tick(20 + 7 * i)
        b.generated(job, ("sketch_output",)).tick(1).completed(
            job, {"sketch_output": str(out.relative_to(tmp_path))}
        )
    for i, title in enumerate(["Ten hikes within an hour of the city", HOSTILE_TITLE]):
        job = f"blog-{i:02d}"
        text = title if title.startswith("Title:") else f"Title: {title}\n\nDescription: Trails and views.\n"
        out = _picture(run / "outputs" / job / "feature_image.png", 10 + i, (1200, 630))
        b.tick(1).submit(job, "blog-image", {"Blog_title_and_description": text}).tick(45)
        b.generated(job, ("feature_image",)).tick(1).completed(
            job, {"feature_image": str(out.relative_to(tmp_path))}
        )
    b.tick(1).submit("sketch-url", "sketch", {"input_image": "https://images.example.com/cat.jpg"}).tick(30)
    b.generated("sketch-url").tick(1).completed("sketch-url", {"image": "run/outputs/sketch-url/gone.png"})
    b.tick(1).submit("sketch-data", "sketch", {"input_image": "data:image/png;base64,… (5120 characters)"})
    out = _sketch(tmp_path / "inputs" / "photo-0.png", run / "outputs" / "sketch-data" / "image.png")
    b.tick(25).generated("sketch-data").tick(1).completed(
        "sketch-data", {"image": str(out.relative_to(tmp_path))}
    )
    b.tick(1).submit("sketch-bad", "sketch", {"input_image": str(tmp_path / "inputs" / "photo-3.png")}).tick(
        9
    )
    b.failed("sketch-bad", HOSTILE_ERROR)
    b.tick(1).submit("sketch-slow", "sketch", {"input_image": "https://images.example.com/dog.jpg"})
    b.write(run / "ledger.jsonl")
    return run


class _Parsed(HTMLParser):
    """A page's start tags with their attributes, and its text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    return _Parsed(page).tags


def test_the_page_is_self_contained_and_can_run_no_script(run_dir: Path) -> None:
    info = build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    tags = _tags(page)
    names = {tag for tag, _ in tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base", "form"}
    csp = [a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in str(csp[0]) and "script" not in str(csp[0])
    for tag, attrs in tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":
            assert str(attrs["src"]).startswith("data:image/jpeg;base64,")
        if tag == "a":
            href = str(attrs["href"])
            assert href.startswith("https://") or not re.match(r"^[a-z][a-z0-9+.-]*:", href), href
    assert "url(" not in page and "@import" not in page
    assert info.bytes == len(page.encode())


def test_every_ledger_string_is_escaped(run_dir: Path) -> None:
    build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "&lt;script&gt;document.title=&#x27;pwned2&#x27;&lt;/script&gt; &amp; friends" in page
    assert "&lt;b&gt;bold&lt;/b&gt; claims" in page
    assert "&lt;script&gt;alert(9)&lt;/script&gt;.png" in page


def test_the_gallery_pairs_every_completed_jobs_input_with_its_output(run_dir: Path) -> None:
    info = build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert (info.completed, info.shown, info.jobs) == (10, 10, 12)
    # 6 photos (one also the failed job's input, made once) + 6 sketches + 2 feature images + 1 more sketch.
    assert info.thumbnails == 15
    assert info.missing == 1  # sketch-url's output file is gone
    gallery = page[page.index('id="gallery"') : page.index('id="failures"')]
    for job in [f"sketch-{i:02d}" for i in range(6)] + ["blog-00", "blog-01", "sketch-url", "sketch-data"]:
        assert f'<code title="{job}">{job}</code>' in gallery
    assert "<strong>Ten hikes within an hour of the city</strong>Trails and views." in gallery
    assert 'href="https://images.example.com/cat.jpg"' in gallery and "remote image (not fetched)" in gallery
    assert "data:image/png;base64,… (5120 characters)" in gallery and "sent inline" in gallery
    assert "run/outputs/sketch-url/gone.png" in gallery and "file not found" in gallery
    # Output files are linked relative to the page, so the folder can be moved as a whole.
    assert 'href="outputs/sketch-00/sketch_output.png"' in gallery


def test_hand_edited_lines_with_odd_job_ids_are_passed_over(run_dir: Path) -> None:
    """A list or mapping as a job id crashed the report (unhashable type); status coped."""
    with (run_dir / "ledger.jsonl").open("a", encoding="utf-8") as fh:
        for odd in (["x"], {"a": 1}, 7):
            fh.write(
                json.dumps({"ts": "2026-01-01T00:00:00.000Z", "job_id": odd, "status": "completed"}) + "\n"
            )
    info = build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0)
    assert (info.completed, info.shown, info.jobs) == (10, 10, 12)


def test_thumbnails_are_small_jpegs(run_dir: Path) -> None:
    build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0, thumb_px=200)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(uris) >= 15
    for data in uris:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            assert img.format == "JPEG" and max(img.size) <= 200
    assert len(page) < 400_000


def test_a_long_ledger_shows_a_capped_gallery_and_says_so(tmp_path: Path) -> None:
    b = LedgerBuilder().run()
    for i in range(2_000):
        job = f"job-{i:05d}"
        b.tick(1).submit(job, "sketch", {"input_image": f"https://img.example.com/{i}.jpg"}).tick(30)
        b.generated(job).tick(1).completed(job, {"image": f"out/{job}.png"})
    ledger = b.write(tmp_path / "ledger.jsonl")
    info = build_report(ledger, tmp_path / "report.html", prices=PRICES, now=0, gallery_cap=50)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert (info.completed, info.shown) == (2_000, 50)
    assert "Showing the 50 latest of 2,000 completed jobs, newest first." in page
    assert "<code>batcher report --gallery N</code> shows the latest N" in page
    assert page.count('<article class="card">') == 50
    shown = re.findall(r'<article class="card"><header><code title="([^"]+)"', page)
    assert shown == [f"job-{i:05d}" for i in range(1_999, 1_949, -1)]


def test_a_nightly_ledgers_report_shows_last_nights_jobs_not_the_first_nights(tmp_path: Path) -> None:
    """The gallery showed the first completed jobs in ledger order and the failures table the
    first failed ones: on a ledger that gains jobs every night, the morning-after report showed
    the first night's forever. It shows the jobs that reached their state last, newest first; a
    job that failed one night and completed the next is in the gallery, not among the failures."""
    b = LedgerBuilder().run()
    for i in range(120):  # night one: 120 completed, 120 failed (more than the failures table holds)
        b.tick(1).submit(f"old-{i:03d}", "sketch", {"input_image": f"https://img.example.com/{i}.jpg"})
        b.tick(30).generated(f"old-{i:03d}").tick(1).completed(f"old-{i:03d}", {"image": f"out/old-{i}.png"})
        b.tick(1).submit(f"oldbad-{i:03d}", "sketch", {"input_image": f"https://img.example.com/b{i}.jpg"})
        b.tick(5).failed(f"oldbad-{i:03d}", "the provider reported FAILED: NSFW", retryable=i == 0)
    b.line(None, "run_end", outputs_synced=True).tick(86_400).run()
    for i in range(5):  # night two: 5 new jobs completed, 2 failed, and old-bad-000 retried and done
        b.tick(1).submit(f"new-{i}", "sketch", {"input_image": f"https://img.example.com/n{i}.jpg"})
        b.tick(30).generated(f"new-{i}").tick(1).completed(f"new-{i}", {"image": f"out/new-{i}.png"})
    b.tick(1).submit("oldbad-000", "sketch", {"input_image": "https://img.example.com/b0.jpg"})
    b.tick(30).generated("oldbad-000").tick(1).completed("oldbad-000", {"image": "out/oldbad-000.png"})
    for i in range(2):
        b.tick(1).submit(f"newbad-{i}", "sketch", {"input_image": f"https://img.example.com/nb{i}.jpg"})
        b.tick(5).failed(f"newbad-{i}", "the provider reported FAILED: NSFW")
    ledger = b.write(tmp_path / "ledger.jsonl")
    info = build_report(ledger, tmp_path / "report.html", prices=PRICES, now=0, gallery_cap=8)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    gallery = page[page.index('id="gallery"') : page.index('id="failures"')]
    shown = re.findall(r'<article class="card"><header><code title="([^"]+)"', gallery)
    assert shown == ["oldbad-000", "new-4", "new-3", "new-2", "new-1", "new-0", "old-119", "old-118"]
    assert (info.completed, info.shown) == (126, 8)
    failures = page[page.index('id="failures"') :]
    listed = re.findall(r"<tr><td><code>([^<]+)</code></td><td>sketch</td>", failures)
    assert listed[:3] == ["newbad-1", "newbad-0", "oldbad-119"]
    assert len(listed) == 100 and "oldbad-000" not in listed
    assert "Failed jobs (latest 100, newest first; 21 more)" in failures


def test_the_gallery_orders_done_jobs_by_their_last_line_whenever_they_were_settled(tmp_path: Path) -> None:
    """The fold keeps a done job only as a hash, and the latest few aside for the gallery. Jobs
    are settled out of line order: a run that ends in order settles each at its completed line,
    while a killed run's jobs wait for a later run's run_end. The gallery still shows the latest
    by line, newest first, and a done job the ledger mentions again (a hand edit: batcher
    writes nothing more of a job done in a run that ended in order) is shown once, as of its
    newest line."""
    b = LedgerBuilder().finished_run(["a0", "a1", "a2", "a3"], ended=True)
    b.tick(3_600).finished_run(["b0", "b1"], ended=False)  # killed: settled by the next run_end
    b.tick(3_600).finished_run(["c0", "c1"], ended=True)
    b.tick(3_600).run().tick(1).generated("a3").tick(1).completed("a3", {"image": "out/a3.png"})
    ledger = b.write(tmp_path / "ledger.jsonl")
    info = build_report(ledger, tmp_path / "report.html", prices=PRICES, now=0, gallery_cap=6)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    shown = re.findall(r'<article class="card"><header><code title="([^"]+)"', page)
    assert shown == ["a3", "c1", "c0", "b1", "b0", "a2"]
    assert (info.completed, info.shown) == (8, 6)


@pytest.mark.parametrize(
    ("failed", "heading"), [(100, "Failed jobs"), (101, "Failed jobs (latest 100, newest first; 1 more)")]
)
def test_the_failed_jobs_heading_says_so_when_even_one_is_not_listed(
    tmp_path: Path, failed: int, heading: str
) -> None:
    """The table lists the latest 100 failed jobs: with 101, the heading says one more is not
    listed (without it, the table reads as every failure); with 100, it says nothing of the
    kind."""
    b = LedgerBuilder().run()
    for i in range(failed):
        b.tick(1).submit(f"bad-{i:03d}", "sketch", {"prompt": f"p{i}"}).tick(5).failed(f"bad-{i:03d}", "nsfw")
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert re.findall(r"<h3>(Failed jobs[^<]*)</h3>", page) == [heading]


def test_failures_are_grouped_and_in_flight_jobs_listed_after_the_gallery(run_dir: Path) -> None:
    build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    failures = page[page.index('id="failures"') :]
    assert "<code>sketch-bad</code>" in failures
    assert '<img class="mini" src="data:image/jpeg;base64,' in failures  # the failed job's input photo
    assert "Still in flight" in failures and "<code>sketch-slow</code>" in failures


@pytest.mark.parametrize(
    ("n", "submissions", "runs", "jobs", "posts"),
    [
        (
            1,
            "1 billed submission",
            "1 run",
            "1 job",
            "1 POST had an unknown outcome: the provider may have billed it ",
        ),
        (
            2,
            "2 billed submissions",
            "2 runs",
            "2 jobs",
            "2 POSTs had an unknown outcome: the provider may have billed them ",
        ),
    ],
)
def test_the_page_counts_one_in_the_singular(
    tmp_path: Path, n: int, submissions: str, runs: str, jobs: str, posts: str
) -> None:
    b = LedgerBuilder()
    for i in range(n):  # a run each: one job completed in 30 s, one POST with no clear answer
        b.tick(60).run().tick(1).submit(
            f"job-{i}", "sketch", {"input_image": f"https://img.example.com/{i}.jpg"}
        )
        b.tick(30).generated(f"job-{i}").tick(1).completed(f"job-{i}", {"image": f"out/job-{i}.png"})
        b.tick(1).submitting(f"lost-{i}", "sketch", {"input_image": "https://img.example.com/x.jpg"})
        b.tick(60).line(f"lost-{i}", "submit_unknown", error="HTTP 502")
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f">{submissions}<" in page and f">{runs}<" in page  # the tiles' notes
    assert f": {jobs}</title>" in page  # the duration histogram's bar
    assert posts in page


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        ("2026-11-21T00:01:00Z", "2026-11-21 00:01 UTC"),
        ("yesterday", "&#x27;yesterday&#x27; (not a time)"),  # it read "yesterday UTC"
    ],
)
def test_the_page_header_shows_the_ledgers_span_in_utc(tmp_path: Path, ts: str, shown: str) -> None:
    b = (
        LedgerBuilder()
        .run()
        .tick(30)
        .submit("sketch-a", "sketch", {"input_image": "https://img.example.com/a.jpg"})
    )
    b.records[-1]["ts"] = ts
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f'<p class="muted">2026-11-21 00:00 UTC → {shown} · ledger <code>' in page


@pytest.mark.parametrize(
    ("values", "width", "counts", "overflow"),
    [
        ([1.0, 2.0, 3.0], 0.5, (0, 0, 1, 0, 1, 0, 1), False),
        ([10.0] * 99 + [1000.0], 0.5, (0,) * 20 + (100,), True),
        ([0.0], 0.0002, (1,), False),
    ],
)
def test_histogram_bins_have_a_nice_width_and_outliers_share_the_last_bin(
    values: list[float], width: float, counts: tuple[int, ...], overflow: bool
) -> None:
    hist = histogram(values)
    assert hist is not None
    assert (hist.width, hist.counts, hist.overflow) == (pytest.approx(width), counts, overflow)
    assert sum(hist.counts) == len(values)


def test_no_generated_job_means_no_histogram() -> None:
    assert histogram([]) is None


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batcher")
    add_report_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


def test_cli_report_writes_report_html_beside_the_ledger(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_report(_cli([str(run_dir / "ledger.jsonl")])) == 0
    assert (run_dir / "report.html").is_file()
    out = capsys.readouterr().out
    assert out.startswith(f"Report written to {run_dir / 'report.html'} (")
    assert "12 jobs, 10 of 10 completed jobs in the gallery; 1 file not found" in out


def test_cli_report_says_the_gallery_holds_the_latest_jobs_and_how_to_see_more(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_report(_cli([str(run_dir / "ledger.jsonl"), "--gallery", "3"])) == 0
    out = capsys.readouterr().out
    assert "12 jobs, 3 of 10 completed jobs in the gallery (the latest; --gallery N for more)" in out


def test_cli_report_with_gallery_0_writes_a_page_of_numbers_and_failures_only(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--gallery 0`` (its error for -1 says "0 or more") is a page of the numbers and the
    failures without the gallery, not a mistake: it is written, with no card, and says how to
    see the completed jobs."""
    assert main_report(_cli([str(run_dir / "ledger.jsonl"), "--gallery", "0"])) == 0
    out = capsys.readouterr().out
    assert "12 jobs, 0 of 10 completed jobs in the gallery (the latest; --gallery N for more)" in out
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert '<article class="card">' not in page and "<h3>Failed jobs</h3>" in page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/missing.jsonl"], "batcher: error: ledger not found: {tmp}/missing.jsonl\n"),
        (["{tmp}/run/ledger.jsonl", "-o", "{tmp}"], "batcher: error: {tmp} is a folder; give -o a file name"),
        (["{tmp}/run/ledger.jsonl", "--gallery", "-1"], "batcher: error: --gallery must be 0 or more\n"),
        (  # a file where -o needs a folder: it said "File exists" (from mkdir)
            ["{tmp}/run/ledger.jsonl", "-o", "{tmp}/run/ledger.jsonl/r.html"],
            "batcher: error: cannot write report {tmp}/run/ledger.jsonl/r.html: {tmp}/run/ledger.jsonl is a"
            " file, not a folder; give -o another path\n",
        ),
        (
            ["{tmp}/run/ledger.jsonl", "-o", "{tmp}/pipe"],
            "batcher: error: {tmp}/pipe is not a regular file (a device, pipe or socket)",
        ),
        (  # a name no filesystem takes: it was a traceback (OSError from the is_dir check)
            ["{tmp}/run/ledger.jsonl", "-o", "{tmp}/" + "r" * 300 + ".html"],
            "batcher: error: cannot write report {tmp}/" + "r" * 300 + ".html: File name too long;"
            " give -o another path\n",
        ),
    ],
)
def test_cli_report_mistakes_are_one_line_and_exit_2(
    run_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    tmp = str(run_dir.parent)
    os.mkfifo(run_dir.parent / "pipe")
    assert main_report(_cli([a.format(tmp=tmp) for a in argv])) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp)) and err.count("\n") == 1
    assert stat.S_ISFIFO((run_dir.parent / "pipe").stat().st_mode)  # left as it was


def test_cli_report_on_a_missing_path_names_the_default_ledger_that_is_there(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``batcher report nightly.jsonl`` beside runs/nightly/ledger.jsonl said only "ledger not
    found"; it names that ledger. A picture given as the ledger gets no manifest's hint."""
    (run_dir.parent / "runs").mkdir()
    shutil.copytree(run_dir, run_dir.parent / "runs" / "nightly")
    monkeypatch.chdir(run_dir.parent)
    assert main_report(_cli(["nightly.jsonl"])) == 2
    err = capsys.readouterr().err
    assert (
        err == "batcher: error: ledger not found: nightly.jsonl (did you mean runs/nightly/ledger.jsonl?)\n"
    )
    picture = "run/outputs/sketch-00/sketch_output.png"
    assert main_report(_cli([picture])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"batcher: error: {picture} is not a batcher ledger") and "a run of" not in err
    assert not Path("report.html").exists() and not Path("run/outputs/sketch-00/report.html").exists()


def test_a_report_written_through_a_symlink_keeps_the_link(run_dir: Path) -> None:
    """os.replace swapped the link for a file and left its target stale."""
    target = run_dir.parent / "keep" / "report.html"
    target.parent.mkdir()
    target.write_text("<!doctype html><p>an earlier report</p>")
    link = run_dir.parent / "link.html"
    link.symlink_to(target)
    assert main_report(_cli([str(run_dir / "ledger.jsonl"), "-o", str(link)])) == 0
    assert link.is_symlink() and target.read_text().startswith("<!doctype html>")


# --- a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing and we are root; else the test is skipped."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip(
                "needs /usr/bin/chromium: run `apt-get install -y chromium` (done automatically as root)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env, check=False)
            if done.returncode != 0:
                pytest.skip(
                    f"could not install chromium: {' '.join(cmd)} failed: {done.stderr.strip()[-300:]}"
                )
    return CHROMIUM


def _browse(chromium: Path, tmp: Path, *args: str, page: Path) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--window-size=1280,2000",
    ]
    env = {**os.environ, "HOME": str(tmp)}
    done = subprocess.run(
        [str(chromium), *flags, *args, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.timeout(1800)
def test_chromium_renders_the_page_with_its_gallery_and_runs_no_ledger_script(
    run_dir: Path, chromium: Path
) -> None:
    build_report(run_dir / "ledger.jsonl", run_dir / "report.html", prices=PRICES, now=0)
    shot = run_dir / "report.png"
    _browse(chromium, run_dir, f"--screenshot={shot}", page=run_dir / "report.html")
    with Image.open(shot) as img:
        assert img.format == "PNG" and img.size == (1280, 2000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 1_000  # text, charts and photos, not a blank page

    dom = _browse(chromium, run_dir, "--dump-dom", page=run_dir / "report.html")
    assert "<title>batcher report: ledger.jsonl</title>" in dom  # no script renamed the page
    assert "<body>" in dom and 'data-pwned="1"' not in dom and "<script" not in dom.lower()
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom  # the hostile error, as text
    assert dom.count('<article class="card">') == 10
    assert '<div class="tile-label">Completed</div><div class="tile-value">10</div>' in dom
    assert '<div class="tile-label">Spend</div><div class="tile-value">$1.88</div>' in dom
    assert dom.count('<rect class="bar"') >= 6


def test_job_durations_are_the_runs_own_timing_not_a_stepped_wall_clock(tmp_path: Path) -> None:
    """A job's duration was its ``generated`` line's time minus its ``submitted`` line's: with an
    NTP step of a day between the two, the chart showed a one-day job. The ``generated`` line's
    ``finished_by`` (seconds on the run's monotonic clock) is used now; a line without one (an
    older ledger, a re-attached job) still falls back to the times."""
    b = LedgerBuilder().run()
    b.tick(1).submit("sketch-a", "sketch", {"input_image": "https://img.example.com/a.jpg"}).tick(86400)
    b.generated("sketch-a")
    b.records[-1].update(finished_after=20.0, finished_by=31.5)
    b.tick(1).completed("sketch-a", {"image": "out/a.png"})
    b.tick(1).submit("sketch-b", "sketch", {"input_image": "https://img.example.com/b.jpg"}).tick(42)
    b.generated("sketch-b").tick(1).completed("sketch-b", {"image": "out/b.png"})
    b.line(None, "run_end", outputs_synced=True, seconds=120.0)
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "2 generations · median 42s" in page and "longest 42s" in page
    assert "1d 00h" not in page  # not in the chart, nor the run's duration or the active time
    assert page.count(">2m 00s<") == 2


def test_the_in_flight_and_runs_tables_show_utc_for_a_time_written_with_an_offset(tmp_path: Path) -> None:
    """The tables cut the ledger's text to 19 characters: a time written with an offset
    (05:00:00+05:00, that is 00:00:00 UTC) showed as 05:00:00 under "Submitted (UTC)"."""
    b = LedgerBuilder().run()
    b.records[-1]["ts"] = "2026-11-21T05:00:00+05:00"
    b.tick(30).submit("sketch-a", "sketch", {"input_image": "https://img.example.com/a.jpg"})
    b.records[-1]["ts"] = "2026-11-21T05:00:30+05:00"
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<tr><td>2026-11-21 00:00:00</td>" in page  # the runs table
    assert "<td>2026-11-21 00:00:30</td>" in page  # the in-flight table
    assert "05:00" not in page.replace("+05:00", "")


# --- where the page goes, and what it must never replace -------------------------------------


@pytest.mark.parametrize("how", ["same path", "another spelling", "symlink", "hard link"])
def test_report_onto_the_ledger_itself_is_refused_and_the_ledger_kept(
    run_dir: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """``-o ledger.jsonl`` replaced the ledger with the page (exit 0): the record of every paid
    job was gone, and the next run paid for them all again."""
    ledger = run_dir / "ledger.jsonl"
    before = ledger.read_bytes()
    target = {
        "same path": ledger,
        "another spelling": run_dir / "outputs" / ".." / "." / "ledger.jsonl",
        "symlink": run_dir / "page.html",
        "hard link": run_dir / "page.html",
    }[how]
    if how == "symlink":
        target.symlink_to(ledger)
    elif how == "hard link":
        target.hardlink_to(ledger)
    assert main_report(_cli([str(ledger), "-o", str(target)])) == 2
    err = capsys.readouterr().err
    assert err.startswith("batcher: error: ") and "is the ledger itself; give -o" in err
    assert err.count("\n") == 1
    assert ledger.read_bytes() == before and not ledger.is_symlink()


def test_report_onto_a_file_that_is_no_web_page_is_refused_but_an_earlier_report_is_replaced(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o`` onto a manifest or an output image replaced it whole with the page."""
    manifest = run_dir.parent / "jobs.jsonl"
    manifest.write_text('{"id": "a", "workflow": "sketch", "input": {"input_image": "a.png"}}\n')
    picture = run_dir / "outputs" / "sketch-00" / "sketch_output.png"
    for victim in (manifest, picture):
        before = victim.read_bytes()
        assert main_report(_cli([str(run_dir / "ledger.jsonl"), "-o", str(victim)])) == 2
        err = capsys.readouterr().err
        assert err == (
            f"batcher: error: {victim} is there and is not a web page (the report would replace it"
            " whole); give -o a new file name, or an earlier report's\n"
        )
        assert victim.read_bytes() == before
    for earlier in ("\ufeff  <!DOCTYPE html><p>old", ""):  # a page (BOM and all), or an empty file
        (run_dir / "old.html").write_text(earlier, encoding="utf-8")
        assert main_report(_cli([str(run_dir / "ledger.jsonl"), "-o", str(run_dir / "old.html")])) == 0
        assert (run_dir / "old.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def test_a_read_only_report_is_refused_and_a_private_one_stays_private(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page replaced a read-only file (os.replace needs only the folder writable), and a
    report kept at 0600 (its thumbnails may be private) came back 0644 after the next run."""
    page = run_dir / "report.html"
    page.write_text("<!doctype html><p>kept</p>")
    page.chmod(0o444)
    assert main_report(_cli([str(run_dir / "ledger.jsonl")])) == 2
    assert capsys.readouterr().err == (
        f"batcher: error: {page} is read-only; make it writable (chmod u+w) or give -o another file name\n"
    )
    assert page.read_text() == "<!doctype html><p>kept</p>"
    page.chmod(0o600)
    assert main_report(_cli([str(run_dir / "ledger.jsonl")])) == 0
    assert stat.S_IMODE(page.stat().st_mode) == 0o600 and "Gallery" in page.read_text(encoding="utf-8")


# --- odd ledgers ---------------------------------------------------------------------------


def test_a_job_with_50_outputs_shows_its_first_few_and_counts_the_rest(tmp_path: Path) -> None:
    """Every output of every card was thumbnailed: a workflow making 50 images a job gave a
    500-card page of 25,000 thumbnails (minutes to make, hundreds of MB to open)."""
    b = LedgerBuilder().run()
    for job in ("many-a", "many-b"):
        paths = {}
        for k in range(50):
            image = tmp_path / "out" / job / f"image_{k}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24, 16), (k * 5, 90, 160)).save(image)
            paths[f"image_{k}"] = str(image)
        inputs = {f"field_{k}": f"value {k}" for k in range(6)}
        b.tick(1).submit(job, "sketch", inputs).tick(30).generated(job, tuple(paths)).tick(1)
        b.completed(job, paths)
    b.tick(1).submit("one", "sketch", {"input_image": "https://img.example.com/1.jpg"}).tick(30)
    b.generated("one").tick(1).completed("one", {"image": str(tmp_path / "out" / "many-a" / "image_0.png")})
    info = build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert info.thumbnails == 2 * 4 and info.missing == 0
    assert page.count('<div class="tile-note">and 46 more outputs, not shown</div>') == 2
    assert page.count('<div class="tile-note">and 2 more inputs, not shown</div>') == 2
    assert page.count("image_3<") == 2 and "image_4<" not in page
    assert page.count(">field_3<") == 2 and ">field_4<" not in page  # the inputs are capped too
    assert page.count("more output") == 2  # the one-output job has no such note


@pytest.mark.anyio
async def test_a_run_folder_moved_elsewhere_still_shows_its_outputs(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The ledger holds its outputs' absolute paths: once the run's folder was moved (to an
    archive, or copied to a laptop), every output was "file not found" though it lay beside the
    ledger. A path that is gone is found again below the ledger's folder, if its size is the one
    the ledger recorded (a different file of the same name is not taken)."""
    clock = ScaledClock(SPEED)
    site = tmp_path / "server" / "runs" / "nightly #1"
    site.mkdir(parents=True)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=1.0), clock=clock) as emu:
        result = await run(settings_for(emu.base_url, site), [manifest], registry, clock)
    assert result.exit_code == 0
    moved = tmp_path / "laptop" / "nightly"
    moved.parent.mkdir()
    (site).rename(moved)
    info = build_report(moved / "ledger.jsonl", moved / "report.html", prices=PRICES, now=0)
    page = (moved / "report.html").read_text(encoding="utf-8")
    assert (info.completed, info.missing, info.thumbnails) == (3, 0, 3)
    links = sorted(re.findall(r'<a href="([^"]+)"', page))
    assert links == [f"out/sketch-{i:04d}.png" for i in range(3)]
    # A file of that name that is not the one the ledger recorded is not shown as it.
    (moved / "out" / "sketch-0001.png").write_bytes(b"not the output")
    info = build_report(moved / "ledger.jsonl", moved / "report.html", prices=PRICES, now=0)
    assert (info.missing, info.thumbnails) == (1, 2)


@pytest.mark.timeout(1800)
def test_a_job_id_of_the_longest_length_allowed_does_not_widen_the_page(
    tmp_path: Path, chromium: Path
) -> None:
    """A 128-character job id (MAX_ID_LENGTH) in the failures and in-flight tables made them
    1,229 px wide: on a window narrower than that the whole page scrolled sideways. The test
    measures a copy of the page, its CSP taken out and a script put in to read the layout."""
    job = "catalogue-photo-" + "x" * (MAX_ID_LENGTH - 16)
    b = LedgerBuilder().run()
    b.tick(1).submit(job, "sketch", {"input_image": "https://img.example.com/a.jpg"}).tick(3)
    b.failed(job, "the provider reported FAILED: NSFW")
    b.tick(1).submit(job[:-1] + "y", "sketch", {"input_image": "https://img.example.com/b.jpg"})
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count(f"<code>{job}</code>") == 2  # the failed job, and the failures' examples
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace(
        "</body>",
        "<script>const d = document.documentElement; document.title ="
        " d.scrollWidth <= d.clientWidth ? 'fits' : 'wider: ' + d.scrollWidth;</script></body>",
    )
    (tmp_path / "probe.html").write_text(probe, encoding="utf-8")
    dom = _browse(chromium, tmp_path, "--dump-dom", "--window-size=800,1200", page=tmp_path / "probe.html")
    assert "<title>fits</title>" in dom


# --- the numbers an operator reads the morning after -----------------------------------------


@pytest.fixture
def every_branch_page(tmp_path: Path) -> str:
    """The page of a ledger with an entry in every list (tests/ledger_builder.every_branch)."""
    b = every_branch()
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=b.now + 100)
    return (tmp_path / "report.html").read_text(encoding="utf-8")


def _rows(html: str) -> list[list[str]]:
    """Each table row's cells, as text."""
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", html)
        if "<td" in row
    ]


def test_the_headline_tiles_and_the_spend_table_show_the_ledgers_numbers(every_branch_page: str) -> None:
    """The tiles and the spend table are what an operator reads first: a count or a sum taken
    from the wrong field (failure reasons as failed jobs, one workflow's spend as the total, an
    unknown price as $0.00) is a wrong number on the page with nothing else to contradict it."""
    tiles = re.findall(
        r'<div class="tile-label">([^<]*)</div><div class="tile-value">([^<]*)</div>'
        r'<div class="tile-note">([^<]*)</div>',
        every_branch_page,
    )
    assert tiles == [
        ("Jobs", "12", "40 ledger lines"),
        ("Completed", "2", "16.7% of jobs"),  # 2 of 12
        ("Failed", "5", "4 distinct reasons"),  # 3 failed, 1 expired, 1 download_failed
        # 6 sketch at $0.1006 and 2 blog-image at $0.4363; the orphan and the raw workflow's are unpriced
        ("Spend", "$1.48", "10 billed submissions, 2 at an unknown price"),
        ("Active time", "2h 03m", "2 runs"),  # 7,381.5 s + 8.25 s
        ("Next run", "7", "known jobs left to run"),
    ]
    spend = every_branch_page[every_branch_page.index("<h2>Spend at list prices</h2>") :]
    spend = spend[: spend.index("</table>")]
    assert _rows(spend) == [
        ["sketch", "6", "$0.1006", "$0.60"],
        ["blog-image", "2", "$0.4363", "$0.87"],
        ["(unknown workflow)", "1", "unknown", "unknown"],
        ["66cec9a38aeef98f887211f1-v2", "1", "unknown", "unknown"],
    ]


def test_the_state_bar_and_the_failures_count_every_failed_status(every_branch_page: str) -> None:
    """The state bar's shares are of all jobs, and the failures section lists expired and
    download_failed jobs with the failed ones (an expired job left out of "Failed jobs" is a
    failure nobody looks at), saying per reason how many the next run retries."""
    legend = re.findall(r'</i>(\w+) <b>(\d+)</b> <span class="muted">([\d.]+)%</span>', every_branch_page)
    assert legend == [
        ("failed", "3", "25.0"),
        ("completed", "2", "16.7"),
        ("submitted", "2", "16.7"),
        ("deferred", "1", "8.3"),
        ("download_failed", "1", "8.3"),
        ("expired", "1", "8.3"),
        ("polled", "1", "8.3"),
        ("submit_unknown", "1", "8.3"),
    ]
    widths = re.findall(r'<span style="width:([\d.]+)%', every_branch_page)
    assert sum(float(w) for w in widths) == pytest.approx(100, abs=0.01)
    failures = every_branch_page[every_branch_page.index('id="failures"') :]
    groups = failures[: failures.index("</table>")]
    assert [(r[0], r[1], r[3], r[4]) for r in _rows(groups)] == [
        ("2", "failed", "0", "sketch-f1, sketch-f2"),
        ("1", "expired", "0", "sketch-x"),
        ("1", "download_failed", "1", "sketch-dl"),
        ("1", "failed", "1", "sketch-g"),
    ]
    jobs = failures[failures.index("<h3>Failed jobs</h3>") :]  # all 5 shown: no "(latest N ...)"
    jobs = jobs[: jobs.index("</table>")]
    assert [(r[0], r[2]) for r in _rows(jobs)] == [
        ("sketch-g", "failed"),
        ("sketch-dl", "download_failed"),
        ("sketch-x", "expired"),
        ("sketch-f2", "failed"),
        ("sketch-f1", "failed"),
    ]


def test_nothing_is_said_to_be_hidden_when_everything_is_shown(every_branch_page: str) -> None:
    """Each list says "latest N of M" or "N more" only when it leaves some out: "Showing the 2
    latest of 2", "0 more" or "oldest 3 of 3" sends the operator looking for jobs that are not
    missing. The runs table lists the latest run first, with each run's own submissions."""
    page = every_branch_page
    assert "<h2>Still in flight</h2>" in page and "<h3>Failed jobs</h3>" in page and "<h3>Runs</h3>" in page
    assert "Showing the" not in page and "commonest" not in page and " more" not in page
    runs = page[page.index("<h3>Runs</h3>") :]
    assert _rows(runs[: runs.index("</table>")]) == [
        ["2026-11-21 03:02:59", "8s", "3", "11"],
        ["2026-11-21 00:00:00", "2h 03m", "7", "29"],
    ]
    assert "generated 2026-11-21 03:04:47 UTC" in page  # the time given, not the clock's


def test_the_runs_table_shows_the_latest_twenty_runs_newest_first(tmp_path: Path) -> None:
    """A nightly ledger gains a run a night: the table shows the last 20 nights, last night at
    the top, and says how many there are (it is not the first 20 nights forever)."""
    b = LedgerBuilder()
    for night in range(25):
        b.tick(86_400).run()
        for k in range(night % 3 + 1):  # 1, 2 or 3 submissions a night
            b.tick(1).submit(f"n{night}-{k}", "sketch", {"input_image": "https://img.example.com/a.jpg"})
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=b.now)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    runs = page[page.index("<h3>Runs (latest 20 of 25)</h3>") :]
    rows = _rows(runs[: runs.index("</table>")])
    assert [r[0][:10] for r in rows] == [f"2026-12-{d:02d}" for d in range(16, 0, -1)] + [
        f"2026-11-{d:02d}" for d in range(30, 26, -1)
    ]
    assert [r[2] for r in rows] == [str(night % 3 + 1) for night in range(24, 4, -1)]


@pytest.mark.parametrize("ledger", ["empty", "a run that found nothing to do"])
def test_a_ledger_with_no_jobs_yet_gets_a_page(tmp_path: Path, ledger: str) -> None:
    """The first night's ledger can hold no job (an empty manifest, or every row invalid): the
    report must still be written, saying so, not stop on a division by zero jobs."""
    b = LedgerBuilder() if ledger == "empty" else LedgerBuilder().run()
    info = build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert (info.jobs, info.completed) == (0, 0)
    assert ">no jobs yet<" in page and "No job has completed yet." in page and "No failures." in page


def test_the_duration_chart_is_drawn_to_its_own_scale(tmp_path: Path) -> None:
    """The bars stand on the axis, reach the gridline of their count, and the axis goes up in
    round steps to at least the tallest bar; each bar's tooltip gives its range and count, the
    last one "≥" only when it holds the outliers. A bar drawn to another scale than its axis
    says a number of jobs that is not the ledger's."""
    b = LedgerBuilder().run()
    for i, seconds in enumerate([0.5, 1.5, 2.5, *range(1, 101)]):  # 7 under 5 s, then 5 every 5 s
        job = f"job-{i:03d}"
        b.tick(1).submit(job, "sketch", {"input_image": "https://img.example.com/a.jpg"}).tick(seconds)
        b.generated(job).tick(1).completed(job, {"image": f"out/{job}.png"})
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    svg = page[page.index("<svg") : page.index("</svg>")]
    grid = {
        int(label): float(y)
        for y, label in re.findall(
            r'<text class="axis" x="40" y="([\d.]+)" text-anchor="end">(\d+)</text>', svg
        )
    }
    assert sorted(grid) == [0, 2, 4, 6, 8]
    bars = re.findall(
        r'<rect class="bar" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" rx="2">'
        r"<title>([^<]*): (\d+) jobs?</title>",
        svg,
    )
    # 7 in the first 5 s bin, five in each after it, and 95-99 s with the 100 s outlier in the last.
    assert [(span, int(n)) for _, _, span, n in bars] == [("0s–5s", 7)] + [
        (f"{lo}s–{lo + 5}s", 5) for lo in range(5, 95, 5)
    ] + [("≥ 95s", 6)]
    baseline, per_job = grid[0] - 4, (grid[0] - grid[8]) / 8  # the labels sit 4 px below their line
    for y, height, _, n in bars:
        assert float(y) + float(height) == pytest.approx(baseline, abs=0.11)
        assert float(height) == pytest.approx(int(n) * per_job, abs=0.11)
    assert "103 generations · median 49s · 90% within 90s · longest 1m 40s" in page


def test_a_reader_of_the_earlier_report_keeps_reading_the_whole_of_it(run_dir: Path) -> None:
    """The page is replaced, not rewritten in place: a browser or a mail-out script that opened
    last night's report while tonight's is written reads last night's whole, never a truncated
    or half-new page, and no temporary file is left beside it."""
    page = run_dir / "report.html"
    earlier = "<!doctype html><p>last night's report</p>" + "x" * 100_000
    page.write_text(earlier, encoding="utf-8")
    before = {p.name for p in run_dir.iterdir()}
    with page.open(encoding="utf-8") as reader:
        assert reader.read(15) == "<!doctype html>"
        build_report(run_dir / "ledger.jsonl", page, prices=PRICES, now=0)
        assert reader.read() == earlier[15:]
    assert 'id="gallery"' in page.read_text(encoding="utf-8")
    assert {p.name for p in run_dir.iterdir()} == before


def _hostile(what: str) -> str:
    """Text that, put on the page unescaped, adds an attribute (inside a quoted attribute) or
    an element (as content): either is found by parsing the page."""
    return f'{what}" data-pwned="1" x="<x-pwned>'


def test_every_string_a_manifest_or_the_provider_wrote_is_shown_as_text_and_adds_no_markup(
    tmp_path: Path,
) -> None:
    """Job ids, workflow names, input and output names, input URLs, a failed job's input, the
    invalid rows' fields, fixes and manifest paths, and the ledger's own file and folder names
    are text someone else wrote (a manifest from a spreadsheet, a provider's answer). Each is
    shown as written, and none can add an element or an attribute to the page, nor a link that
    is not to the web or a file beside it."""
    run_dir = tmp_path / _hostile("run")  # the folder the ledger is in, shown in the header
    workflow = _hostile("workflow")
    photo = _picture(tmp_path / "photo.png", 1)
    web = 'https://img.example.com/a.jpg?caption=" data-pwned="1'
    b = LedgerBuilder().run()
    b.line(
        None,
        "invalid",
        row_id="r",
        source=_hostile("/data/m.jsonl"),
        line=3,
        field=_hostile("field"),
        error="is missing",
        fix=_hostile("fix"),
    )
    done, bad, waiting = _hostile("done"), _hostile("bad"), _hostile("waiting")
    b.tick(1).submit(done, workflow, {_hostile("photo"): str(photo), _hostile("url"): web}).tick(30)
    b.generated(done).tick(1).line(
        done,
        "completed",
        outputs=[{"key": _hostile("output"), "url": "javascript:alert(1)", "path": "run/gone.png"}],
    )
    b.tick(1).submit(
        bad,
        workflow,
        {
            "Blog_title_and_description": f"Title: {_hostile('title')}\n\n"
            f"Description: {_hostile('description')}\n"
        },
    ).tick(5)
    b.failed(bad, _hostile("error"))
    b.tick(1).submit(waiting, workflow, {"input_image": web})
    run_dir.mkdir()
    ledger = b.write(run_dir / f"{_hostile('ledger')}.jsonl")
    build_report(ledger, run_dir / "report.html", prices=PRICES, now=0)
    parsed = _Parsed((run_dir / "report.html").read_text(encoding="utf-8"))
    for tag, attrs in parsed.tags:
        assert tag != "x-pwned" and "data-pwned" not in attrs and 'data-pwned"' not in attrs, (tag, attrs)
        if tag == "a":
            assert re.match(r"https://|[^:]*$", str(attrs["href"])), attrs
    text = "".join(parsed.text)
    for what in (
        "run",
        "ledger",
        "workflow",
        "done",
        "bad",
        "waiting",
        "photo",
        "url",
        "output",
        "title",
        "description",
        "error",
        "field",
        "fix",
        "/data/m.jsonl",
    ):
        assert _hostile(what) in text, what
    alts = [attrs.get("alt") for tag, attrs in parsed.tags if tag == "img"]
    assert _hostile("photo") in alts
    links = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert links.count(web) == 1  # the completed job's input


def test_text_outputs_are_shown_and_odd_file_names_are_linked_to_their_file(tmp_path: Path) -> None:
    """An output saved as a text file (a caption: any case of .txt) shows its text, and one the
    ledger holds inline shows that text, not "file not found". A file whose name has a space,
    '#', '%' or '?' is linked so that the link opens that file: unquoted, a browser reads the
    name's '#' as the start of a fragment and opens a file that is not there."""
    run_dir = tmp_path / "run"
    odd = _picture(run_dir / "out" / "night #1 50% done?.png", 2)
    caption = run_dir / "out" / "caption.TXT"
    caption.write_text("A house under a yellow sun.", encoding="utf-8")
    b = LedgerBuilder().run()
    b.tick(1).submit("job", "sketch", {"input_image": "https://img.example.com/a.jpg"}).tick(30)
    outputs = [
        {"key": "image", "path": str(odd)},
        {"key": "caption", "path": str(caption)},
        {"key": "summary", "text": "Two sentences about it."},
    ]
    b.generated("job", ("image", "caption", "summary")).tick(1).line("job", "completed", outputs=outputs)
    info = build_report(b.write(run_dir / "ledger.jsonl"), run_dir / "report.html", prices=PRICES, now=0)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert (info.missing, info.thumbnails) == (0, 1)
    links = [
        str(a["href"]) for tag, a in _tags(page) if tag == "a" and not str(a["href"]).startswith("https:")
    ]
    assert sorted(run_dir / unquote(urlsplit(href).path) for href in links) == sorted([caption, odd])
    assert '<div class="textbox">A house under a yellow sun.</div>' in page
    assert '<div class="textbox">Two sentences about it.</div>' in page


def test_long_texts_are_clipped_and_a_failure_without_a_message_says_so(tmp_path: Path) -> None:
    """A provider's 50,000-character error (an HTML error page) and a long prompt are clipped in
    the failures table, not put on the page whole for each of up to 100 failed jobs; a failed
    line with no error says so, not "None"."""
    b = LedgerBuilder().run()
    b.tick(1).submit("wordy", "sketch", {"prompt": "p" * 10_000}).tick(5).failed("wordy", "e" * 50_000)
    b.tick(1).submit("silent", "sketch", {"prompt": "short"}).tick(5).line("silent", "failed")
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    jobs = page[page.index("<h3>Failed jobs</h3>") :]
    rows = {row[0]: row for row in _rows(jobs[: jobs.index("</table>")])}
    assert rows["wordy"][3] == "e" * 999 + "…" and rows["wordy"][4] == "p" * 599 + "…"
    assert rows["silent"][3] == "(no error message)"
    assert len(page) < 30_000


def test_a_job_sent_again_with_an_edited_row_shows_the_input_it_was_sent_with_last(tmp_path: Path) -> None:
    """A row edited under the same id and sent again (``--retry-failed``, a resubmitted POST)
    has two ``submitting`` lines. Its failure row and its gallery card show what was sent last,
    the input that failed or made the picture: the first wording, shown beside an error or an
    output it did not cause, sent the operator to fix a row that was already fixed."""
    b = LedgerBuilder().run()
    b.tick(1).submit("failed-twice", "sketch", {"prompt": "first wording"}).tick(5)
    b.failed("failed-twice", "nsfw")
    b.tick(1).submit("fixed", "sketch", {"prompt": "a cat, badly put"}).tick(5).failed("fixed", "nsfw")
    b.run().tick(60)
    b.submit("failed-twice", "sketch", {"prompt": "second wording"}).tick(5)
    b.failed("failed-twice", "nsfw again")
    b.tick(1).submit("fixed", "sketch", {"prompt": "a cat, put well"}).tick(30).generated("fixed").tick(1)
    b.completed("fixed", {"image": "out/gone.png"})
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    jobs = page[page.index("<h3>Failed jobs</h3>") :]
    rows = {row[0]: row for row in _rows(jobs[: jobs.index("</table>")])}
    assert rows["failed-twice"][3] == "nsfw again" and rows["failed-twice"][4] == "second wording"
    assert "a cat, put well" in page and "a cat, badly put" not in page
    assert "first wording" not in page


def test_a_photo_taken_sideways_is_shown_upright(tmp_path: Path) -> None:
    """A phone's portrait photo is stored landscape with an EXIF orientation: its thumbnail is
    turned upright, not shown lying on its side."""
    photo = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to show
    Image.new("RGB", (300, 100), (200, 90, 40)).save(photo, exif=exif)
    b = LedgerBuilder().run()
    b.tick(1).submit("job", "sketch", {"input_image": str(photo)}).tick(30)
    b.generated("job").tick(1).completed("job", {"image": "out/gone.png"})
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    (data,) = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    with Image.open(io.BytesIO(base64.b64decode(data))) as thumb:
        assert thumb.height > thumb.width


def test_an_input_file_gone_since_the_run_is_counted_among_the_files_not_found(tmp_path: Path) -> None:
    """``batcher report`` ends "N files not found": a job's input photo deleted or moved since
    the run is one of them, as its missing output would be, and its tile says so."""
    b = LedgerBuilder().run()
    b.tick(1).submit("job", "sketch", {"input_image": str(tmp_path / "photos" / "gone.png")}).tick(30)
    b.generated("job").tick(1).completed("job", {"image": str(_picture(tmp_path / "out.png", 1))})
    info = build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert (info.missing, info.thumbnails) == (1, 1)
    assert f'{tmp_path}/photos/gone.png</div><div class="tile-note">file not found</div>' in page


def test_a_moved_runs_outputs_are_found_by_their_longest_matching_path(tmp_path: Path) -> None:
    """A moved run folder's outputs are looked for by the longest tail of their old path first:
    a file of the same name and size nearer the ledger (a copy put beside it to look at, another
    job's output of the same name) is not linked, nor thumbnailed, in the output's place."""
    moved = tmp_path / "laptop" / "nightly"
    b = LedgerBuilder().run()
    for job in ("job-b", "job-a"):  # job-a, completed last, is looked for first
        output = _picture(moved / "out" / job / "image.png", 3 if job == "job-a" else 4)
        b.tick(1).submit(job, "sketch", {"input_image": "https://img.example.com/a.jpg"}).tick(30)
        b.generated(job).tick(1).line(
            job,
            "completed",
            outputs=[
                {
                    "key": "image",
                    "path": f"/srv/runs/nightly/out/{job}/image.png",
                    "bytes": output.stat().st_size,
                }
            ],
        )
        if job == "job-a":  # the same bytes' count, another picture, beside the ledger
            decoy = moved / "image.png"
            decoy.write_bytes(output.read_bytes()[::-1])
    info = build_report(b.write(moved / "ledger.jsonl"), moved / "report.html", prices=PRICES, now=0)
    page = (moved / "report.html").read_text(encoding="utf-8")
    assert (info.missing, info.thumbnails) == (0, 2)
    links = sorted(re.findall(r'<a href="([^"]+)"', page))
    assert [link for link in links if not link.startswith("https:")] == [
        "out/job-a/image.png",
        "out/job-b/image.png",
    ]


def test_a_long_one_line_text_input_is_shown_as_text(tmp_path: Path) -> None:
    """A text input of one line over 255 bytes with a dot in it (a prompt of a few sentences) was
    looked for as a file name: the operating system refused the name as too long and the report
    stopped with "File name too long", writing no page. It is shown as the text it is."""
    prompt = "A watercolour painting of a lighthouse at dusk, soft light. " * 5
    b = LedgerBuilder().run()
    b.tick(1).submit("job", "sketch", {"prompt": prompt}).tick(30)
    b.generated("job").tick(1).completed("job", {"image": "out/job.png"})
    b.tick(1).submit("bad", "sketch", {"prompt": prompt}).tick(5).failed("bad", "NSFW")
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f'<div class="textbox">{prompt}</div>' in page  # the gallery's card
    assert f'<span class="clamp">{prompt}</span>' in page  # the failed job's input


def test_a_transparent_output_is_shown_on_white(tmp_path: Path) -> None:
    """A PNG with a transparent background (a logo, a cut-out) is thumbnailed on white, as a
    browser shows it: dropping the alpha channel turns the transparent part black."""
    logo = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    ImageDraw.Draw(logo).ellipse((40, 20, 80, 60), fill=(220, 40, 40, 255))
    logo.save(tmp_path / "logo.png")
    b = LedgerBuilder().run()
    b.tick(1).submit("job", "sketch", {"input_image": "https://img.example.com/a.jpg"}).tick(30)
    b.generated("job").tick(1).completed("job", {"image": str(tmp_path / "logo.png")})
    build_report(b.write(tmp_path / "ledger.jsonl"), tmp_path / "report.html", prices=PRICES, now=0)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    (data,) = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    with Image.open(io.BytesIO(base64.b64decode(data))) as thumb:
        rgb = thumb.convert("RGB")
        assert min(rgb.getpixel((2, 2))) > 240  # the transparent corner: white
        red, green, _ = rgb.getpixel((rgb.width // 2, rgb.height // 2))
        assert red > 180 and green < 100  # the circle kept its colour
