"""Paired comparison of two sweeps: B - A per programming seed, on synthetic and real sweep CSVs."""

import io

import numpy as np
import pandas as pd
import pytest

from aimc_lsh.studies.paired import differing_columns, paired_differences
from aimc_lsh.studies.paired_cli import main


def _sweep(accuracy_of, checkpoint="a.pt", offsets=(0.0,)):
    rows = []
    for placement in ("codes_on_array", "conventional"):
        for t in (1.0, 86400.0):
            for offset in offsets:
                for seed in range(4):
                    rows.append({
                        "placement": placement, "t_seconds": t, "program_seed": seed,
                        "sense_amp.offset_std": offset, "checkpoint": checkpoint, "device.name": "pcm",
                        "variant_id": f"{checkpoint}-{placement}-{offset}",  # differs between sweeps
                        "t_label": "1s" if t == 1.0 else "1d",
                        "accuracy": accuracy_of(placement, t, offset, seed),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_differences_per_point_with_standard_error():
    gains = np.array([0.01, 0.03, -0.01, 0.05])  # B - A per programming seed
    a = _sweep(lambda p, t, o, s: 0.5 + 0.1 * s - 0.01 * (t > 1))  # chips differ a lot between seeds
    b = _sweep(lambda p, t, o, s: 0.5 + 0.1 * s - 0.01 * (t > 1) + gains[s], checkpoint="b.pt")
    out = paired_differences(a, b)
    assert list(out["placement"]) == ["codes_on_array"] * 2 + ["conventional"] * 2
    assert (out["n"] == 4).all() and (out["b_better"] == 3).all()
    assert np.allclose(out["diff"], gains.mean())
    assert np.allclose(out["diff_sem"], gains.std(ddof=1) / 2)
    assert np.allclose(out["mean_b"] - out["mean_a"], out["diff"])
    assert differing_columns(a, b) == ["checkpoint"]  # variant_id varies inside each sweep


def test_a_column_that_varies_inside_a_sweep_is_matched_on():
    a = _sweep(lambda p, t, o, s: 0.6 - o, offsets=(0.0, 0.01))
    b = _sweep(lambda p, t, o, s: 0.6 - o / 2, offsets=(0.0, 0.01))
    out = paired_differences(a, b)
    assert len(out) == 8 and "sense_amp.offset_std" in out.columns
    by_offset = out.groupby("sense_amp.offset_std")["diff"].mean()
    assert by_offset[0.0] == pytest.approx(0.0) and by_offset[0.01] == pytest.approx(0.005)


def test_sweeps_that_do_not_pair_are_rejected():
    a = _sweep(lambda *_: 0.5)
    b = a.assign(program_seed=a["program_seed"] + 10)
    with pytest.raises(ValueError, match="share no draw.*--seeds"):
        paired_differences(a, b)
    with pytest.raises(ValueError, match="more than once"):
        paired_differences(pd.concat([a, a]), a)
    with pytest.raises(ValueError, match="no column.*program_seed"):
        paired_differences(a.drop(columns="program_seed"), a)


def test_real_sweep_paired_with_its_rerun_differs_by_nothing(drift_reference, capsys):
    csv_bytes, out = drift_reference
    frame = pd.read_csv(io.BytesIO(csv_bytes))
    summary = paired_differences(frame, frame.copy())
    assert (summary["diff"] == 0).all() and (summary["b_better"] == 0).all()
    assert summary["n"].sum() == len(frame)  # every draw matched once, over every configuration
    path = next(out.glob("*.csv"))
    assert main([str(path), str(path)]) == 0
    printed = capsys.readouterr().out
    assert "| placement |" in printed and "+0.00 ± 0.00" in printed


def test_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert exit_info.value.code == 2 and "a.csv not found" in capsys.readouterr().err
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "a.csv"), str(tmp_path / "a.csv")])
    assert exit_info.value.code == 2 and "has no column(s) placement" in capsys.readouterr().err
