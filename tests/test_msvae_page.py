"""The MS-VAE page's FID (issue 24): only records in the calibrated reference feature space decide
the FID claim, and the calibration table comes from its record."""

from __future__ import annotations

import json

import pytest

from inference.reproduce import experiments as ex


def _record(seed, fid_ms, fid_big, net):
    n = {"betatc/mig": 0.2 + 0.01 * seed, "msvae/fid": fid_ms, "big_betatc/fid": fid_big, "msvae/l2": 0.004,
         "big_betatc/l2": 0.004, "msvae/mig": 0.2, "big_betatc/mig": 0.2}
    return n | ({"fid_net": net} if net else {})


def test_the_fid_claim_reads_only_records_scored_by_the_reference_net():
    ref = ex._reference_fid_net()
    old = {s: _record(s, 1.0, 9.0, None) for s in range(3)}  # an earlier net: a huge gap it cannot resolve
    claim = ex._msvae_claims({"experiment": old}, "cpu")[1]
    assert "n = 0 vs 0" in claim.ours and claim.verdict == "inconclusive"
    new = {s: _record(s, 10.0 + 0.1 * s, 20.0 + 0.2 * s, ref) for s in range(3, 8)}
    claim = ex._msvae_claims({"experiment": old | new}, "cpu")[1]
    assert "n = 5 vs 5" in claim.ours and "Δ -10.500" in claim.ours  # mean(10.5) − mean(21.0) of the new five


def test_the_calibration_table_comes_from_its_record(tmp_path, monkeypatch):
    ref = ex._reference_fid_net()
    cal = {"rows": {"sample": 2.0, "blur3x3": 50.0}, "blur_over_sample": 25.0, "n": 10, "seed": 0,
           "noise_std": 0.05, "feature_net": ref}
    (tmp_path / ex.CALIBRATION_FILE).write_text(json.dumps({f"cpu/{ref}": cal}))
    from inference.papers import msvae
    monkeypatch.setattr(msvae, "calibrate_fid", lambda *a, **k: pytest.fail("recomputed a kept calibration"))
    text = ex._msvae_calibration(tmp_path, "cpu")
    assert "| that sample, 3×3 box blur | 50.000 | 25.0 |" in text and "25.0× the distance" in text
