"""Who is me: by from_id, from the export or --me; a display name only as an explicit fallback."""

from __future__ import annotations

from prepare_fixtures.exports import ME, ME_ID, MIN, chat, contents, exchange, full, msg, prepare, run_ok, them, write


def test_full_export_says_who_i_am(tmp_path):
    train, _, report = run_ok(full(chat(exchange(0, mine="mine!"))), tmp_path)
    assert contents(train, "assistant") == ["mine!"]
    assert contents(train, "user") == ["are you coming?"]
    assert report["me"] == {"id": ME, "name": "Robin Vale", "found_by": "personal_information.user_id"}


def test_single_chat_export_needs_me_and_lists_the_senders(tmp_path):
    path = write(tmp_path, chat(exchange(0)))
    result = prepare(path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "pass --me" in result.stderr and '"from_id"' in result.stderr
    assert f"{ME} 'Robin Vale'" in result.stderr and "user2002" in result.stderr
    assert not (tmp_path / "out").exists()


def test_single_chat_export_with_me(tmp_path):
    for me in (ME, str(ME_ID)):
        out_dir = tmp_path / me
        out_dir.mkdir()
        train, _, report = run_ok(chat(exchange(0, mine="yes")), out_dir, "--me", me)
        assert contents(train, "assistant") == ["yes"]
        assert report["me"]["found_by"] == "--me"


def test_me_overrides_the_export_owner(tmp_path):
    train, _, _ = run_ok(full(chat([msg(0, text="from robin"), them(MIN, "from friend")])), tmp_path, "--me", "user2002")
    assert contents(train, "assistant") == ["from friend"]
    assert contents(train, "user") == ["from robin"]


def test_old_exports_with_numeric_from_id(tmp_path):
    messages = [them(0, "old style"), msg(MIN, ME_ID, "numeric me")]
    messages[0]["from_id"] = 2002
    train, _, _ = run_ok(full(chat(messages)), tmp_path)
    assert train == [[{"role": "user", "content": "old style"}, {"role": "assistant", "content": "numeric me"}]]


def test_name_fallback_warns_when_two_senders_share_the_name(tmp_path):
    messages = [them(0, "hey"), msg(MIN, "user1001", "me one", name="Robin"), them(2 * MIN, "and?"),
                msg(3 * MIN, "user3003", "me two?", name="Robin")]
    path = write(tmp_path, chat(messages))
    result = prepare(path, "-o", tmp_path / "out", "--me-name", "Robin")
    assert result.exit_code == 0, result.output
    assert "2 senders share the name 'Robin' (user1001, user3003)" in result.stderr
    report = (tmp_path / "out" / "report.json").read_text()
    assert "share the name" in report and '"found_by": "--me-name"' in report


def test_name_fallback_without_collision_does_not_warn(tmp_path):
    path = write(tmp_path, chat([them(0, "hey"), msg(MIN, text="yo", name="Robin")]))
    result = prepare(path, "-o", tmp_path / "out", "--me-name", "Robin")
    assert result.exit_code == 0 and "share the name" not in result.stderr, result.stderr


def test_unknown_me_is_refused_with_the_senders(tmp_path):
    path = write(tmp_path, full(chat(exchange(0))))
    result = prepare(path, "-o", tmp_path / "out", "--me", "user999")
    assert result.exit_code == 2
    assert "no messages from user999" in result.stderr and "user2002" in result.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_me_is_refused(tmp_path):
    result = prepare(write(tmp_path, chat(exchange(0))), "-o", tmp_path / "out", "--me", "Robin")
    assert result.exit_code == 2 and "is not a Telegram user id" in result.stderr
