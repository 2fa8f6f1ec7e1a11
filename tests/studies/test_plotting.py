"""plot_bands: one panel per value, each with its own x label where given."""

import pandas as pd

from aimc_lsh.studies.plotting import plot_bands


def test_panels_take_their_own_x_labels(tmp_path):
    frame = pd.DataFrame(
        {
            "knob": ["sa_offset_mv"] * 4 + ["read_noise_std"] * 4,
            "value": [0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.05, 0.05],
            "accuracy": [0.9, 0.8, 0.7, 0.6, 0.9, 0.9, 0.8, 0.7],
        }
    )
    labels = []
    path = plot_bands(
        frame, x="value", y="accuracy", panel_by="knob", path=tmp_path / "p.png", xlabel="knob value",
        panel_xlabels={"sa_offset_mv": "offset std (mV)"}, after=lambda ax: labels.append(ax.get_xlabel()),
    )  # fmt: skip
    assert path.read_bytes().startswith(b"\x89PNG")
    assert labels == ["knob value", "offset std (mV)"]  # panels sorted by value; unnamed -> xlabel
