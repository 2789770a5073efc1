"""Contact sheets and library maps: self-contained HTML that renders in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path


def _rendered_images(page, page_file: Path) -> list[dict]:
    """Each <img> of the page once loaded in Chromium: its natural size (0 if it did not render)."""
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    return page.eval_on_selector_all(
        "img",
        "imgs => imgs.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete}))",
    )


def test_contact_sheet_renders_in_chromium(cli, photos, tmp_path, browser_page):
    strange = photos / 'odd <b>&"name.png'
    shutil.copy(photos / "red_circle_1.png", strange)
    cli("index", str(photos))
    sheet = tmp_path / "sheet.html"
    result = cli("search", "a red circle", "-k", "5", "--html", str(sheet))
    assert result.exit_code == 0, result.output
    text = sheet.read_text()
    assert text.count("<figure") == 5
    assert "<b>&" not in text  # names are escaped, never markup
    assert len(re.findall(r'src="data:image/jpeg;base64,', text)) == 5  # one self-contained file

    images = _rendered_images(browser_page, sheet)
    assert len(images) == 5
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in images), images


def test_library_map_renders_in_chromium(cli, photos, tmp_path, browser_page):
    cli("index", str(photos))
    page = tmp_path / "map.html"
    result = cli("map", "--html", str(page), "--max-images", "10")
    assert result.exit_code == 0 and result.stdout.strip() == f"wrote {page} (10 images)"
    images = _rendered_images(browser_page, page)
    assert len(images) == 10 and all(i["w"] > 0 for i in images)
    positions = re.findall(r"left:([\d.]+)%;top:([\d.]+)%", page.read_text())
    assert len(positions) == 10 and len(set(positions)) > 1  # spread out, not piled up


def test_open_hands_the_contact_sheet_to_the_system_viewer(cli, photos, tmp_path, monkeypatch):
    opened = tmp_path / "opened.txt"
    viewer = tmp_path / "bin" / "xdg-open"
    viewer.parent.mkdir()
    viewer.write_text(f'#!/bin/sh\necho "$@" > {opened}\n')
    viewer.chmod(viewer.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{viewer.parent}{os.pathsep}{os.environ['PATH']}")
    cli("index", str(photos))
    assert cli("similar", str(photos / "green_square_0.png"), "--open").exit_code == 0
    shown = Path(opened.read_text().strip())
    assert shown.suffix == ".html" and shown.read_text().count("<figure") == 10


def test_contact_sheet_of_a_file_that_is_gone(cli, photos, tmp_path):
    cli("index", str(photos))
    (photos / "blue_circle_0.png").unlink()
    sheet = tmp_path / "sheet.html"
    cli("search", "a blue circle", "-k", "3", "--html", str(sheet))
    assert "cannot read this file" in sheet.read_text()


def test_unwritable_html_target_is_a_clear_error(cli, photos, tmp_path):
    cli("index", str(photos))
    target = tmp_path / "no" / "such" / "dir" / "x.html"
    result = cli("search", "a red circle", "--html", str(target))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: cannot write {target}: No such file or directory"
