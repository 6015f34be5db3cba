"""The one exception ↔ status table (shoal.statuses) that every front end and client reads."""

from __future__ import annotations

import inspect

import grpc
import pytest

from shoal import errors
from shoal.errors import (
    Closed,
    GroupNotFound,
    InvalidKey,
    KeyTooLarge,
    LoadTimeout,
    NotFound,
    PeerError,
    PeerTimeout,
    RemoteLoadError,
    ShoalError,
)
from shoal.statuses import (
    GO_LOAD_FAILED,
    GRPC_LOAD_FAILED_CODES,
    LOAD_FAILED,
    PEER_LOAD_FAILED,
    PEER_NODE_UNAVAILABLE,
    PEER_NOT_FOUND,
    STATUSES,
    raised_for_code,
    statuses_of,
)
from shoal.transport.http import STATUS_NODE_UNAVAILABLE
from shoal.wire import STATUS_LOAD_FAILED, PeerReply, classify_get_status

ERRORS = [
    cls
    for name in errors.__all__
    if inspect.isclass(cls := getattr(errors, name)) and issubclass(cls, ShoalError)
]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_shoal_error_has_a_row_whose_api_column_is_its_own(cls: type[ShoalError]) -> None:
    row = STATUSES[cls]
    assert (row.api, row.code) == (cls.http_status, cls.code)
    assert row.grpc in grpc.StatusCode.__members__
    assert 400 <= row.peer <= 599


def test_the_nearest_listed_class_answers_and_anything_else_is_a_failed_load() -> None:
    class MissingUser(NotFound):
        pass

    assert statuses_of(MissingUser("u")) is STATUSES[NotFound]
    assert statuses_of(KeyTooLarge("k")) is STATUSES[KeyTooLarge] != STATUSES[InvalidKey]
    assert statuses_of(PeerTimeout("p")) is STATUSES[PeerTimeout]
    assert statuses_of(ValueError("the database said no")) is LOAD_FAILED
    assert (LOAD_FAILED.api, LOAD_FAILED.peer, LOAD_FAILED.grpc) == (502, 503, "UNAVAILABLE")


def test_the_peer_port_answers_as_go_clients_expect() -> None:
    assert PEER_NOT_FOUND == STATUSES[GroupNotFound].peer == 404
    assert PEER_NODE_UNAVAILABLE == STATUS_NODE_UNAVAILABLE == 502 != STATUSES[Closed].api
    assert PEER_LOAD_FAILED == {LOAD_FAILED.peer, GO_LOAD_FAILED} == {500, 503}
    # A failed load of any kind is 503 on the peer port, whatever the API says.
    assert {STATUSES[cls].peer for cls in (LoadTimeout, RemoteLoadError, PeerError)} == {503}
    # The wire codec reads the same statuses back.
    assert LOAD_FAILED.peer == STATUS_LOAD_FAILED
    assert classify_get_status(PEER_NOT_FOUND) is PeerReply.NOT_FOUND
    assert {classify_get_status(status) for status in PEER_LOAD_FAILED} == {PeerReply.LOAD_FAILED}
    assert classify_get_status(PEER_NODE_UNAVAILABLE) is PeerReply.FAILED


@pytest.mark.parametrize("cls", list(STATUSES), ids=lambda cls: cls.__name__)
def test_a_client_raises_what_the_code_it_reads_names(cls: type[ShoalError]) -> None:
    row = STATUSES[cls]
    assert raised_for_code(row.grpc_code) is row.raised
    if row.raised is not None and row.raised is not RemoteLoadError:
        # An error the caller can act on comes back as itself.
        assert row.raised is cls
    if issubclass(cls, errors.LoadError) and cls is not LoadTimeout:
        assert row.grpc_code == "load_failed"
        assert row.raised is RemoteLoadError
    if issubclass(cls, errors.LoadError):  # the owner tried: the asking node does not load again
        assert {row.code, row.grpc_code} <= GRPC_LOAD_FAILED_CODES
