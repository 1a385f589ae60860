"""docs/contract.md lists every error code the code can answer with (issue #24: the API
answered codes the contract did not name)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from scenerender.errors import all_error_classes
from tests.cli_run import run

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
CODE_LITERAL = re.compile(r"""["']code["']\s*:\s*["']([A-Z_]+)["']""")


def answered_codes() -> set[str]:
    found = {cls.code for cls in all_error_classes()}
    for path in [*(ROOT / "scenerender").rglob("*.py"), *(ROOT / "functions").glob("*.py")]:
        found |= set(CODE_LITERAL.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_error_code_is_in_the_contract_docs() -> None:
    codes = answered_codes()
    assert {"INVALID_SPEC", "NOT_FOUND", "INTERNAL"} <= codes  # the scan finds them at all
    missing = sorted(code for code in codes if f"`{code}`" not in DOC)
    assert not missing, f"answered but not in docs/contract.md: {missing}"


def test_the_scan_finds_a_literal_code() -> None:
    assert CODE_LITERAL.findall('return {"error": {"code": "METHOD", "message": "x"}}, 405') == ["METHOD"]


def test_the_no_audio_result_and_the_preview_profile_are_documented() -> None:
    assert "`loudness_lufs` and `true_peak_db` are `null` when the output has no" in DOC
    assert "Preview renders (`output.preview: true`) are H.264 High" in DOC


def test_the_contracts_schema_is_what_scenerender_schema_prints() -> None:
    appendix = DOC.split("## Appendix: the JSON Schema of spec v1", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", appendix, re.S)
    assert block is not None, "docs/contract.md has no schema block under its appendix"
    printed = run("schema")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(block[1]) == json.loads(printed.stdout), (
        "docs/contract.md's schema is not the code's: paste `scenerender schema` into its appendix"
    )
