"""Named studies of the paper's phenomena, run by `gpicl_tf.studies.runner`
(`python -m pipelines.study NAME --preset GRID --workdir DIR`)."""

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.studies import plateau, plateau_batch, state_size, transition

STUDIES = {s.name: s for s in (transition.STUDY, state_size.STUDY, plateau_batch.STUDY,
                                plateau.STUDY)}


def get_study(name: str):
    if name not in STUDIES:
        raise InvalidInputError(f"unknown study {name!r}; known: {sorted(STUDIES)}")
    return STUDIES[name]
