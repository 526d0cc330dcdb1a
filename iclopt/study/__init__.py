"""Trial ledgers: the in-memory one of a search run alone, the shared study of many workers.

- :mod:`iclopt.study.ledger`: the ledger contract, its admission rule and the
  in-memory ledger;
- :mod:`iclopt.study.shared`: one search shared by many workers through an Optuna
  storage (:class:`SharedStudy`);
- :mod:`iclopt.study.storage`: opening that storage, with one-line errors.
"""

from iclopt.study.ledger import InMemoryLedger, Reservation, StudyTrial, TrialLedger, admitted
from iclopt.study.shared import SharedStudy, read_study, search_fingerprint
from iclopt.study.storage import check_storage, describe_storage

__all__ = [
    "InMemoryLedger",
    "Reservation",
    "SharedStudy",
    "StudyTrial",
    "TrialLedger",
    "admitted",
    "check_storage",
    "describe_storage",
    "read_study",
    "search_fingerprint",
]
