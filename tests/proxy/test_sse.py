from bastion.proxy.sse import EventBuffer, parse_event


def test_events_split_across_chunks_come_out_whole() -> None:
    buffer = EventBuffer()
    stream = b'event: a\ndata: {"x":\ndata: 1}\n\ndata: two\r\n\r\n: comment\n\ndata: tail'
    events = [e for i in range(0, len(stream), 3) for e in buffer.feed(stream[i : i + 3])]
    assert [parse_event(e) for e in events][:2] == [
        parse_event(b'event: a\ndata: {"x":\ndata: 1}\n\n'),
        parse_event(b"data: two\r\n\r\n"),
    ]
    assert parse_event(events[0]).event == "a" and parse_event(events[0]).data == '{"x":\n1}'
    assert parse_event(events[2]).data == ""
    assert buffer.flush() == b"data: tail"
