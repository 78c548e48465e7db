"""The downstream goals of issue #17, in one place for the benches that judge them (edit, customize,
edit_compare, downstream).

* editing: a direction is monotone when the median over faces of Spearman's rho between the step and the
  world predictor's reading of the target attribute is at least ``MONOTONE_RHO``;
* customisation: a class meets its goal when at least ``CLASS_HIT`` of the faces drawn for it are read as the
  class and their diversity (against unconditional samples) is at least ``CLASS_DIVERSITY``.
"""

MONOTONE_RHO = 0.95
CLASS_HIT = 0.95
CLASS_DIVERSITY = 0.8


def class_goal_met(row: dict, hit: str = "hit") -> bool:
    """Whether one customisation result row (keys ``hit``, ``diversity``) meets the class goal; `hit` names
    another reading of the hit rate (``hit_second_judge``: the independent judge's), absent = not met."""
    return row.get(hit, 0.0) >= CLASS_HIT and row["diversity"] >= CLASS_DIVERSITY
