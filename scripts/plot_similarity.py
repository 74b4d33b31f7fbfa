"""Fig. 5 of the paper: distributions of the cosine similarity between user representations.

    python scripts/plot_similarity.py --checkpoints adaptssr=saved/RUN/units/UNIT/pretrain/ssr.pth \
        cl4srec=saved/RUN/units/UNIT/pretrain/cl4srec.pth --dataset ttl --data_path dataset \
        [--users 10000 --augment mask,crop --ratio 0.6 --seed 0 --out similarity]

Writes OUT/similarity.png (one panel per checkpoint: KDE of original-vs-augmented and different-users
similarities), OUT/similarity.csv (every similarity) and OUT/similarity_summary.csv. See docs/comparison.md and
recbole_adaptssr/analysis/similarity.py for the exact protocol.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_adaptssr.analysis.similarity import main  # noqa: E402

if __name__ == "__main__":
    main()
