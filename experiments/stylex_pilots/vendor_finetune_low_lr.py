"""Issue 20 pilot: ``vendor-finetune`` with a fifth of its learning rate (base lr 0.02, lr 0.005).

Command (after ``experiments/stylex_finetune_init.py --config THIS_FILE --workdir W``):
``stylejax train simsiam --config experiments/stylex_pilots/vendor_finetune_low_lr.py --workdir W``
"""

import dataclasses

from stylejax.train import simsiam_configs


def get_config():
    return dataclasses.replace(simsiam_configs.vendor_finetune(), name="vendor-finetune-low-lr",
                               base_lr=0.02)
