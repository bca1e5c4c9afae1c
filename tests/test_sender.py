"""The sender: requests handed over in one turn of the loop are written together."""

from __future__ import annotations

import asyncio

from checker.http.sender import sender


class RecordingTransport(asyncio.Transport):
    """Records what is written; can be closing, or fail on write."""

    def __init__(self, log: list[tuple[str, bytes]], name: str, *, fail: bool = False) -> None:
        super().__init__()
        self.log = log
        self.name = name
        self.fail = fail
        self.closing = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.fail:
            raise RuntimeError("the transport broke")
        self.log.append((self.name, bytes(data)))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = True
        self.closing = True

    def close(self) -> None:
        self.closing = True


def make_writer(transport: RecordingTransport) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    return asyncio.StreamWriter(transport, protocol, reader, loop)


async def test_requests_of_one_turn_are_written_together_in_order() -> None:
    log: list[tuple[str, bytes]] = []
    a = make_writer(RecordingTransport(log, "a"))
    b = make_writer(RecordingTransport(log, "b"))
    sender().send(a, b"first")
    sender().send(b, b"second")
    assert log == []  # held until the loop turns
    await asyncio.sleep(0)
    assert log == [("a", b"first"), ("b", b"second")]
    sender().send(a, b"third")
    await asyncio.sleep(0)
    assert log[-1] == ("a", b"third")
    a.close()
    b.close()


async def test_a_connection_closed_before_the_write_is_skipped() -> None:
    log: list[tuple[str, bytes]] = []
    gone = make_writer(RecordingTransport(log, "gone"))
    kept = make_writer(RecordingTransport(log, "kept"))
    sender().send(gone, b"x")
    sender().send(kept, b"y")
    gone.close()  # its check was cancelled before the loop turned
    await asyncio.sleep(0)
    assert log == [("kept", b"y")]
    kept.close()


async def test_a_failing_write_aborts_its_connection_and_spares_the_others() -> None:
    log: list[tuple[str, bytes]] = []
    broken = RecordingTransport(log, "broken", fail=True)
    fine = RecordingTransport(log, "fine")
    writers = make_writer(broken), make_writer(fine)
    sender().send(writers[0], b"x")
    sender().send(writers[1], b"y")
    await asyncio.sleep(0)
    # Aborted, so the reader waiting for its answer sees the connection go
    # instead of waiting out the check's deadline.
    assert broken.aborted
    assert log == [("fine", b"y")]
    for writer in writers:
        writer.close()
