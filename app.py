"""The Gradio app: `python app.py [--host H] [--port P] [--config C] [--db D]`.

Each browser session is one user: the name typed in the Chat tab (remembered by
the browser, so a reload comes back to the same conversation), or the login name
when the app runs with `--auth-file`. A user only ever sees their own conversation.

HTTP API (for gradio_client): `/chat(user, message) -> reply` streams the reply,
`/history(user) -> [[user_text, reply], ...]` returns the current conversation.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from chatbot import Agent, ConfigError, MessageError, ModelLoadError
from memory.store import StoreError
from vocab.report import EVENT_COLUMNS, TOKEN_COLUMNS, size_figure, user_events, user_tokens

log = logging.getLogger("app")


def _user(name: str, request: gr.Request | None) -> str:
    """A logged-in user's name wins over anything the client sends."""
    if request is not None and getattr(request, "username", None):
        return request.username
    return (name or "").strip()


def _chat_messages(agent: Agent, user: str) -> list[dict]:
    messages: list[dict] = []
    for turn in agent.history(user):
        messages.append({"role": "user", "content": turn.user_text})
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
        shown = 0
        try:
            for reply in agent.chat_stream(user, message):
                if not shown:
                    history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
                for note in reply.notes[shown:]:
                    gr.Warning(note)
                    history.insert(-1, {"role": "assistant", "content": note, "metadata": {"title": "Note"}})
                shown = max(len(reply.notes), 1)
                history[-1]["content"] = reply.text
                yield history, ""
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

    def show_vocabulary(name: str, request: gr.Request) -> tuple:
        """The Vocabulary tab: a summary, the size plot, the user's grown tokens and their events."""
        vocab, user = agent.vocab, _user(name, request)
        if vocab is None:
            return "The elastic vocabulary is off in this config (`vocab.enabled: false`).", None, [], []
        summary = (
            f"{len(vocab.tokens)} added tokens over {vocab.base_size:,} base tokens after {vocab.step} turns "
            f"(all users). Below: the words your messages turned into tokens"
            + (f", {user}." if user else "; type your name in the Chat tab to see them.")
        )
        figure = size_figure(vocab, agent.store.db)
        if not user:
            return summary, figure, [], []
        return summary, figure, user_tokens(vocab, agent.store.db, user), user_events(agent.store.db, user)

    with gr.Blocks(title="Learning chatbot") as demo:
        saved_name = gr.BrowserState("", storage_key="chatbot-user")
        with gr.Tab("Chat"):
            name = gr.Textbox(label="Your name", placeholder="who is chatting", visible=not auth, max_lines=1)
            chatbot = gr.Chatbot(label="Conversation", height=480)
            message = gr.Textbox(label="Message", placeholder="Type a message and press Enter", max_lines=8)
            with gr.Row():
                send = gr.Button("Send", variant="primary")
                new = gr.Button("New conversation")

        with gr.Tab("Vocabulary") as vocab_tab:
            vocab_summary = gr.Markdown()
            vocab_plot = gr.Plot(label="Vocabulary size over turns")
            vocab_tokens = gr.Dataframe(headers=TOKEN_COLUMNS, label="Your words that became tokens", interactive=False)
            vocab_events = gr.Dataframe(headers=EVENT_COLUMNS, label="Your grow and prune events, newest first", interactive=False)
            vocab_refresh = gr.Button("Refresh")
        vocab_views = [vocab_summary, vocab_plot, vocab_tokens, vocab_events]
        for trigger in (vocab_tab.select, vocab_refresh.click):
            trigger(show_vocabulary, name, vocab_views, api_visibility="private")

        # A name typed before the page finished loading wins over the one the browser saved.
        demo.load(lambda saved, typed: typed or saved, [saved_name, name], name, api_visibility="private").then(
            load_history, name, chatbot, api_visibility="private"
        )
        name.submit(load_history, name, chatbot, api_visibility="private")
        name.blur(load_history, name, chatbot, api_visibility="private")
        name.change(lambda n: n, name, saved_name, api_visibility="private")
        for trigger in (message.submit, send.click):
            trigger(respond, [name, message, chatbot], [chatbot, message], api_visibility="private")
        new.click(new_conversation, name, chatbot, api_visibility="private")
        gr.api(chat, api_name="chat")
        gr.api(history, api_name="history")
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


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Chat in the browser with a chatbot that learns while it talks.")
    parser.add_argument("--host", default=env("CHATBOT_HOST", "127.0.0.1"), help="address to bind (env CHATBOT_HOST)")
    parser.add_argument("--port", type=int, default=int(env("CHATBOT_PORT", "7860")), help="port (env CHATBOT_PORT)")
    parser.add_argument("--config", default=env("CHATBOT_CONFIG", "configs/default.yaml"), help="YAML config (env CHATBOT_CONFIG)")
    parser.add_argument("--db", default=env("CHATBOT_DB"), help="SQLite file; default the config's store.path (env CHATBOT_DB)")
    parser.add_argument("--auth-file", default=env("CHATBOT_AUTH_FILE"), help="user:password lines; logins become users")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    try:
        auth = _read_auth(args.auth_file) if args.auth_file else None
        agent = Agent.from_config(args.config, db=args.db)
    except (ConfigError, StoreError, ModelLoadError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = agent.controller.load_report
    log.info("model ready (%s) in %.1f s; database %s", report.source, report.seconds, agent.store.path)
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
