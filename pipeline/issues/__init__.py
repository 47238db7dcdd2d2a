"""Issues over time: status transitions of error groups (fingerprints). Pure; the worker runs it."""

from pipeline.issues.lifecycle import (
    ACTIONS,
    ALERTABLE,
    STATUSES,
    Command,
    IssueRules,
    IssueState,
    Occurrence,
    OccurrenceRecord,
    Transition,
    apply_command,
    apply_occurrences,
    parse_record,
    record_key,
)
from pipeline.issues.rows import occurrence_records, state_row, transition_row

__all__ = ["ACTIONS", "ALERTABLE", "STATUSES", "Command", "IssueRules", "IssueState", "Occurrence",
           "OccurrenceRecord", "Transition", "apply_command", "apply_occurrences", "occurrence_records",
           "parse_record", "record_key", "state_row", "transition_row"]
