"""The two 600-step pilot runs that decided the shipped StyleX config.

Both: width-16 ResNet-18, 64 px exact crops of 256 px phantoms, batch 64, every
pair of two different phantoms, 25 % vendor styles, base lr 0.25. They differ only
in where crops are placed: anywhere (``pilot_a``, air included) or on breast tissue
(``pilot_b``, >= 80 % tissue).

Commands (about 9 minutes each on 2 CPU cores, then ~1.5 minutes of evaluation):
    stylejax train simsiam --config experiments/stylex_pilots/pilot_a.py --workdir /tmp/pilot_a
    stylejax train simsiam --config experiments/stylex_pilots/pilot_b.py --workdir /tmp/pilot_b
    python experiments/stylex_pilots/evaluate_pilot.py /tmp/pilot_a
    python experiments/stylex_pilots/evaluate_pilot.py /tmp/pilot_b
    python experiments/stylex_pilots/evaluate_pilot.py shipped

What they printed (results.txt): crops on tissue took the h sweep's |Spearman|
(1-D t-SNE) from 0.096 to 0.748 and LAP-x retrieval from 0.562 to 1.000.
"""

from stylejax.train.simsiam_configs import Config


def pilot(name: str, min_tissue: float) -> Config:
    return Config(name=name, width=16, raw_size=256, num_raw=384, image_size=64,
                  crop_scale=(0.25, 0.25), embed_size=256, min_tissue=min_tissue,
                  different_content=1.0, vendor_fraction=0.25, num_vendor_raw=48,
                  batch_size=64, steps=600, base_lr=0.25, log_every=10, plot_every=100,
                  checkpoint_every=100)
