from stdnum import iso11649

from billing_events.references import creditor_reference, printed


def test_creditor_reference_is_iso_11649_and_stable() -> None:
    # The values payments stored before the function moved here: the same invoice, the same reference.
    pinned = {"NW-2026-0007": "RF45NW20260007", "BT-2026/0001": "RF43BT20260001", "tsd-000001": "RF22TSD000001"}
    assert {number: creditor_reference(number) for number in pinned} == pinned
    for number in ("BT-2026/0001", "CLD-000042", "x", "A" * 40):
        reference = creditor_reference(number)
        assert iso11649.is_valid(reference), number
    assert creditor_reference("A" * 40) == creditor_reference("A" * 21)  # at most 21 characters of body
    assert printed("RF45NW20260007") == "RF45 NW20 2600 07" == iso11649.format("RF45NW20260007")
