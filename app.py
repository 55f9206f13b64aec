"""The Gradio app: `python app.py [--host H] [--port P] [--config C] [--db D]`.

Each browser session is one user: the name typed in the Chat tab (remembered by
the browser, so a reload comes back to the same conversation), or the login name
when the app runs with `--auth-file`. A user only ever sees their own conversation.

HTTP API (for gradio_client): `/chat(user, message) -> reply` streams the reply,
`/history(user) -> [[user_text, reply], ...]` returns the current conversation,
`/memory(user) -> {...}` the user's memories as the Memory tab exports them.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from chatbot import Agent, ConfigError, MessageError, ModelLoadError
from chatbot.memory_file import MemoryFileError, read_memory_file
from storage import StoreError
from ui import memory_tab, vocab_tab

log = logging.getLogger("app")


def _user(name: str, request: gr.Request | None) -> str:
    """A logged-in user's name wins over anything the client sends."""
    if request is not None and getattr(request, "username", None):
        return request.username
    return (name or "").strip()


def _memory_message(memory: dict) -> dict | None:
    text = memory_tab.memory_markdown(memory)
    return {"role": "assistant", "content": text, "metadata": {"title": "What memory contributed", "status": "done"}} if text else None


def _chat_messages(agent: Agent, user: str) -> list[dict]:
    messages: list[dict] = []
    for turn in agent.history(user):
        messages.append({"role": "user", "content": turn.user_text})
        detail = _memory_message(json.loads(turn.meta).get("memory", {}))
        if detail:
            messages.append(detail)
        messages.append({"role": "assistant", "content": turn.reply})
    return messages


def build_app(agent: Agent, *, auth: bool = False) -> gr.Blocks:
    """The Blocks UI and API around `agent`."""

    def load_history(name: str, request: gr.Request) -> list[dict]:
        user = _user(name, request)
        return _chat_messages(agent, user) if user else []

    def respond(name: str, message: str, history: list[dict], request: gr.Request) -> Iterator[tuple]:
        user = _user(name, request)
        history = list(history or [])
        start = len(history)
        try:
            for reply in agent.chat_stream(user, message):
                turn = [{"role": "user", "content": message}]
                turn += [{"role": "assistant", "content": n, "metadata": {"title": "Note"}} for n in reply.notes]
                detail = _memory_message(reply.memory)
                turn += [detail] if detail else []
                turn.append({"role": "assistant", "content": reply.text})
                if len(history) == start:
                    for note in reply.notes:
                        gr.Warning(note)
                history[start:] = turn
                # the box stays locked until the turn ends, because a message sent meanwhile would be dropped
                yield history, gr.update(value="", interactive=False)
        except (MessageError, StoreError) as exc:
            raise gr.Error(str(exc)) from None

    def new_conversation(name: str, request: gr.Request) -> list[dict]:
        try:
            agent.new_conversation(_user(name, request))
        except MessageError as exc:
            raise gr.Error(str(exc)) from None
        return []

    def chat(user: str, message: str, request: gr.Request) -> Iterator[str]:
        """Send `message` as `user`; yields the reply as it grows (the last value is the whole reply)."""
        try:
            for reply in agent.chat_stream(_user(user, request), message):
                yield reply.text
        except (MessageError, StoreError) as exc:
            raise gr.Error(str(exc)) from None

    def history(user: str, request: gr.Request) -> list[list[str]]:
        """The user's current conversation as [user_text, reply] pairs, oldest first."""
        try:
            return [[t.user_text, t.reply] for t in agent.history(_user(user, request))]
        except MessageError as exc:
            raise gr.Error(str(exc)) from None

    def memory(user: str, request: gr.Request) -> dict:
        """The user's memories as the Memory tab exports them (engrams and neural-memory writes)."""
        try:
            return json.loads(agent.export_memory(_user(user, request)).to_json())
        except MessageError as exc:
            raise gr.Error(str(exc)) from None

    def show_vocabulary(name: str, request: gr.Request) -> tuple:
        """The Vocabulary tab: a summary, the size plot, the user's grown tokens and their events."""
        user = _user(name, request)
        view = agent.vocabulary_view(user)
        if view is None:
            return "The elastic vocabulary is off in this config (`vocab.enabled: false`).", None, [], []
        return vocab_tab.summary(view, user), vocab_tab.size_figure(view), vocab_tab.token_rows(view), vocab_tab.event_rows(view)

    def show_memory(name: str, request: gr.Request, status: str = "") -> tuple:
        """The Memory tab: summaries, engrams, links plot, writes, reads (and a status line)."""
        user = _user(name, request)
        if not user:
            return "Type your name in the Chat tab to see your memories.", [], None, "", [], [], status
        view = agent.memory_view(user)
        summary, neural = memory_tab.summaries(view, user)
        return (summary, memory_tab.engram_rows(view.engrams, view.corrected), memory_tab.links_figure(view.engrams), neural,
                memory_tab.write_rows(view.writes), memory_tab.read_rows(view.reads), status)

    def forget_one(name: str, engram_id: float | None, request: gr.Request) -> tuple:
        user = _user(name, request)
        if not user or engram_id is None:
            raise gr.Error("type your name in the Chat tab and the id of the engram to forget")
        gone = agent.forget_engram(user, int(engram_id))
        status = f"Forgot: {'; '.join(gone)}" if gone else f"There is no engram #{int(engram_id)} to forget."
        return show_memory(name, request, status)

    def clear_all(name: str, sure: bool, request: gr.Request) -> tuple:
        user = _user(name, request)
        if not user:
            raise gr.Error("type your name in the Chat tab first")
        if not sure:
            raise gr.Error("tick the box to confirm that all your memories should go")
        count = agent.clear_memory(user)
        return (*show_memory(name, request, f"Cleared {count} memories."), False)

    def export(name: str, request: gr.Request) -> str:
        user = _user(name, request)
        if not user:
            raise gr.Error("type your name in the Chat tab first")
        path = Path(tempfile.mkdtemp(prefix="memory-")) / f"memory-{''.join(c if c.isalnum() else '_' for c in user)}.json"
        path.write_text(agent.export_memory(user).to_json(), encoding="utf-8")
        return str(path)

    def import_file(name: str, raw: bytes | None, request: gr.Request) -> tuple:
        user = _user(name, request)
        if not user or raw is None:
            raise gr.Error("type your name in the Chat tab and choose a file exported from the Memory tab")
        try:
            engrams, writes = agent.import_memory(user, read_memory_file(raw))
        except MemoryFileError as exc:
            raise gr.Error(f"nothing was imported: {exc}") from None
        return show_memory(name, request, f"Imported {engrams} engrams and {writes} neural-memory writes.")

    with gr.Blocks(title="Learning chatbot") as demo:
        saved_name = gr.BrowserState("", storage_key="chatbot-user")
        with gr.Tab("Chat"):
            name = gr.Textbox(label="Your name", placeholder="who is chatting", visible=not auth, max_lines=1)
            chatbot = gr.Chatbot(label="Conversation", height=480)
            message = gr.Textbox(label="Message", placeholder="Type a message and press Enter", max_lines=8)
            with gr.Row():
                send = gr.Button("Send", variant="primary")
                new = gr.Button("New conversation")

        with gr.Tab("Memory") as memory_page:
            memory_summary = gr.Markdown()
            engram_table = gr.Dataframe(headers=memory_tab.ENGRAM_COLUMNS, label="Engrams, newest first", interactive=False, wrap=True)
            links_plot = gr.Plot(label="Strongest co-fire links")
            neural_summary = gr.Markdown()
            writes_table = gr.Dataframe(headers=memory_tab.WRITE_COLUMNS, label="Neural memory writes, newest first", interactive=False, wrap=True)
            reads_table = gr.Dataframe(headers=memory_tab.READ_COLUMNS, label="Latest neural memory reads", interactive=False, wrap=True)
            with gr.Row():
                forget_id = gr.Number(label="Engram id", precision=0)
                forget_button = gr.Button("Forget this engram")
                memory_refresh = gr.Button("Refresh")
            with gr.Row():
                sure = gr.Checkbox(label="Yes, clear all my memories", value=False)
                clear_button = gr.Button("Clear all", variant="stop")
            with gr.Row():
                export_button = gr.Button("Export to JSON")
                exported = gr.File(label="Exported memories", interactive=False)
                upload = gr.File(label="Import from JSON (replaces your memories)", file_types=[".json"], type="binary")
                import_button = gr.Button("Import")
            memory_status = gr.Markdown()
        memory_views = [memory_summary, engram_table, links_plot, neural_summary, writes_table, reads_table, memory_status]
        for trigger in (memory_page.select, memory_refresh.click):
            trigger(show_memory, name, memory_views, api_visibility="private")
        forget_button.click(forget_one, [name, forget_id], memory_views, api_visibility="private")
        clear_button.click(clear_all, [name, sure], [*memory_views, sure], api_visibility="private")
        export_button.click(export, name, exported, api_visibility="private")
        import_button.click(import_file, [name, upload], memory_views, api_visibility="private")

        with gr.Tab("Vocabulary") as vocabulary_page:
            vocab_summary = gr.Markdown()
            vocab_plot = gr.Plot(label="Your vocabulary size over your turns")
            vocab_tokens = gr.Dataframe(headers=vocab_tab.TOKEN_COLUMNS, label="Your words that became tokens", interactive=False)
            vocab_events = gr.Dataframe(headers=vocab_tab.EVENT_COLUMNS, label="Your grow and prune events, newest first", interactive=False)
            vocab_refresh = gr.Button("Refresh")
        vocab_views = [vocab_summary, vocab_plot, vocab_tokens, vocab_events]
        for trigger in (vocabulary_page.select, vocab_refresh.click):
            trigger(show_vocabulary, name, vocab_views, api_visibility="private")

        # A name typed before the page finished loading wins over the one the browser saved.
        demo.load(lambda saved, typed: typed or saved, [saved_name, name], name, api_visibility="private").then(
            load_history, name, chatbot, api_visibility="private"
        )
        name.submit(load_history, name, chatbot, api_visibility="private")
        name.blur(load_history, name, chatbot, api_visibility="private")
        name.change(lambda n: n, name, saved_name, api_visibility="private")
        for trigger in (message.submit, send.click):
            trigger(respond, [name, message, chatbot], [chatbot, message], api_visibility="private").then(
                lambda: gr.update(interactive=True), None, message, api_visibility="private"
            )
        new.click(new_conversation, name, chatbot, api_visibility="private")
        gr.api(chat, api_name="chat")
        gr.api(history, api_name="history")
        gr.api(memory, api_name="memory")
    return demo


def _read_auth(path: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            user, sep, password = line.partition(":")
            if not sep or not user.strip() or not password:
                raise ValueError(f"{path}:{number}: expected user:password")
            pairs.append((user.strip(), password))
    return pairs


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Chat in the browser with a chatbot that learns while it talks.")
    parser.add_argument("--host", default=env("CHATBOT_HOST", "127.0.0.1"), help="address to bind (env CHATBOT_HOST)")
    parser.add_argument("--port", type=int, default=int(env("CHATBOT_PORT", "7860")), help="port (env CHATBOT_PORT)")
    parser.add_argument("--config", default=env("CHATBOT_CONFIG", "configs/default.yaml"), help="YAML config (env CHATBOT_CONFIG)")
    parser.add_argument("--db", default=env("CHATBOT_DB"), help="SQLite file; default the config's store.path (env CHATBOT_DB)")
    parser.add_argument("--auth-file", default=env("CHATBOT_AUTH_FILE"), help="user:password lines; logins become users")
    parser.add_argument("--open-to-network", action="store_true",
                        help="allow a non-loopback --host without --auth-file (anyone who reaches the port can act as any user)")
    args = parser.parse_args(argv)
    if not (_is_loopback(args.host) or args.auth_file or args.open_to_network):
        print(f"error: --host {args.host} is reachable from other machines, and without --auth-file anyone there could "
              "read or clear any user's memories; add --auth-file, or --open-to-network if that is what you want",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    try:
        auth = _read_auth(args.auth_file) if args.auth_file else None
        agent = Agent.from_config(args.config, db=args.db)
    except (ConfigError, StoreError, ModelLoadError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("model ready (%s) in %.1f s; database %s", agent.load_report.source, agent.load_report.seconds, agent.db_path)
    demo = build_app(agent, auth=auth is not None)
    demo.queue()
    try:
        demo.launch(server_name=args.host, server_port=args.port, auth=auth, prevent_thread_lock=True)
        log.info("ready at http://%s:%d in %.1f s", args.host, args.port, time.perf_counter() - started)
        demo.block_thread()
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
