"""The controller: one frozen decoder LM (loaded by chatbot/loading.py), its tokenizer and chat template.

It lays out prompts (`prompt_ids`, with each note's token span), streams replies
(`generate`, optionally after soft-prefix vectors, with the notes' spelling and answer
biases) and measures how much a reply attended to each note. A llama model on the CPU
decodes through `LeanLlama` and keeps each user's prompt KV for their next turn; any
other model (or `generation.decode: transformers`) goes through transformers' generate.
One model serves every request: a lock serialises them, so generation never interleaves,
and all of its heavy work runs on one thread of its own, the only one given several CPU
threads (see chatbot/__init__.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from transformers import (
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    SequenceBiasLogitsProcessor,
    StoppingCriteriaList,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TextIteratorStreamer,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from text import words
from vocab import ElasticVocab

from . import lean_llama
from .config import GenerationConfig, ModelConfig
from .generation import Cancelled, Generation
from .kv_cache import UserCaches
from .lean_llama import LeanLlama
from .answerable import AnswerProbe, file_digest
from .loading import LoadReport, load_model, model_tag
from .prompt import ACKNOWLEDGEMENTS, CORRECTION_ACKNOWLEDGEMENTS, NOT_TOLD_REPLIES

log = logging.getLogger(__name__)
T = TypeVar("T")


class Controller:
    """A frozen causal LM with its tokenizer.

    Args:
        model: the decoder LM (eval mode, gradients off).
        tokenizer: its tokenizer, with a chat template.
        threads: CPU threads of the model's own thread; 0 = every core this process may use.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, threads: int = 0) -> None:
        self.model = model.eval().requires_grad_(False)
        self._threads = threads or len(os.sched_getaffinity(0))
        self._start_model_thread()
        ref = weakref.ref(self)
        # a forked child holds no copy of the model's thread: it starts its own
        os.register_at_fork(after_in_child=lambda: (c := ref()) is not None and c._start_model_thread())
        self.tokenizer = tokenizer
        self.lock = threading.RLock()
        self.load_report = LoadReport("given", 0.0)
        # When set, generate() merges prompts into the user's grown tokens, bars every other added id, and decodes with it.
        self.vocab: ElasticVocab | None = None
        # Control strings ("<|im_start|>") typed by a user or held in a memory must stay text.
        self._controls = sorted({t.content for t in tokenizer.added_tokens_decoder.values() if t.special and len(t.content) > 1},
                                key=len, reverse=True)
        self._lean: LeanLlama | None = None  # built on the first lean generation (it re-views the model's weights)
        self._caches = UserCaches(0)
        self.probe: AnswerProbe | None = None  # whether any note answers a question (chatbot/answerable.py)
        # the first token of each of the adapter's acknowledgements: no reply to a question opens with one. Barring
        # the first piece ("N" of "Noted") keeps the model from spelling on another word from it ("Noticing ...");
        # a name it would open ("Nina") comes later instead ("You told me that Nina ...")
        self._acknowledging = sorted({tokenizer(a, add_special_tokens=False)["input_ids"][0]
                                      for a in ACKNOWLEDGEMENTS + CORRECTION_ACKNOWLEDGEMENTS})
        eos = model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [tokenizer.eos_token_id if eos is None else eos])

    def _start_model_thread(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="model", initializer=torch.set_num_threads, initargs=(self._threads,))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "Controller":
        """Load the model `cfg` names; raises ModelLoadError with a fix on failure."""
        model, tokenizer, report = load_model(cfg)
        controller = cls(model, tokenizer, cfg.threads)
        controller.load_report = report
        controller.probe = AnswerProbe.load(cfg.not_told_probe, model=model_tag(cfg), adapter=file_digest(cfg.adapter),
                                            hidden_size=controller.hidden_size) if cfg.not_told_probe else None
        return controller

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def max_positions(self) -> int:
        return self.model.config.max_position_embeddings

    def chat_ids(self, messages: list[dict[str, str]]) -> torch.LongTensor:
        """Token ids of `messages` in the chat template, ending with the assistant's cue.

        Base-tokenizer ids: generate() merges them into the user's elastic vocabulary under
        the model lock, so no vocabulary change can come between merge and generation.
        Returns: [1, T] token ids.
        """
        return self.prompt_ids(messages)[0]

    def prompt_ids(self, messages: list[dict[str, str]], spans_of: Sequence[str] = (),
                   spans_after: str = "") -> tuple[torch.LongTensor, list[tuple[int, int]]]:
        """`chat_ids`, and the token span [start, end) where each text of `spans_of` first
        appears in the prompt after the last occurrence of `spans_after`, searched in
        order ((0, 0) when absent): a note also said in an earlier turn is found in the notes.

        Returns: [1, T] base token ids and one span per text.
        """
        messages = [{**m, "content": self.escape(m["content"])} for m in messages]
        spans_of = [self.escape(t) for t in spans_of]
        rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        encoded = self.tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        spans, search_from = [], max(rendered.rfind(self.escape(spans_after)), 0) if spans_after else 0
        for text in spans_of:
            at = rendered.find(text, search_from)
            covered = [i for i, (a, b) in enumerate(offsets) if at >= 0 and a < at + len(text) and b > at]
            spans.append((covered[0], covered[-1] + 1) if covered else (0, 0))
            search_from = at + len(text) if at >= 0 else search_from
        return torch.tensor([encoded["input_ids"]]), spans

    def escape(self, text: str) -> str:
        """`text` with every control string of the chat template broken by a word joiner
        (U+2060), so the tokenizer reads it as plain text, never as a control token."""
        for control in self._controls:
            if control in text:
                text = text.replace(control, control[0] + "\u2060" + control[1:])
        return text

    def note_bias(self, notes: Sequence[str], answer_words: Sequence[str], gen: GenerationConfig,
                  user: str = "") -> dict[tuple[int, ...], float]:
        """Token-sequence biases (transformers' `sequence_bias`) that make a reply copy from its notes.

        Spelling: once a reply holds the first k pieces of a word of `notes`, piece k+1
        gets gen.note_spelling_bias; the 135M model starts invented names right and ends
        them its own way ("Rosiacrest" -> "Rosiac"). Answering: the first piece of each
        of `answer_words` that the base tokenizer splits (names, numbers: words the model
        cannot know) gets gen.note_answer_bias wherever the reply is, against the values
        of earlier answers in the conversation that it would otherwise copy.
        Returns: {token ids (`user`'s elastic merges applied when replies use added tokens): bias};
        empty when nothing is biased.
        """
        bias: dict[tuple[int, ...], float] = {}
        if gen.note_spelling_bias:
            for word in {w for note in notes for w in words(note)}:
                for text in (" " + word, word):  # mid-reply, and at the reply's start
                    base = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                    for ids in {tuple(self._reply_ids(base, gen, user)), *([tuple(base)] if gen.spell_base_pieces else [])}:
                        bias.update({ids[: k + 1]: gen.note_spelling_bias for k in range(1, len(ids))})
        if gen.note_answer_bias:
            for word in set(answer_words):
                base = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                # a number's space is a piece of its own (" 5202" -> " ", "5", "2", ...): bias its first digit
                lead = next((i for i, t in enumerate(base) if self.tokenizer.decode([t]).strip()), len(base))
                if len(base) - lead >= 2:  # a grown token may hold the space too, so both are biased
                    firsts = {self._reply_ids(base, gen, user)[0], self._reply_ids(base[lead:], gen, user)[0]} - set(base[:lead])
                    bias.update({(first,): gen.note_answer_bias for first in firsts})
        return bias

    def _reply_ids(self, ids: list[int], gen: GenerationConfig, user: str) -> list[int]:
        """Base token ids as a reply to `user` would spell them: their elastic merges applied when replies use added tokens."""
        return self.vocab.merge(ids, user=user) if self.vocab is not None and gen.reply_added_tokens else ids

    def barred_ids(self, gen: GenerationConfig, user: str = "") -> list[int]:
        """The added ids a reply to `user` must not emit: every one they do not hold (all, when
        replies use no added tokens), so no user's reply carries another user's word."""
        if self.vocab is None:
            return []
        return self.vocab.foreign_ids(user) if gen.reply_added_tokens else list(range(self.vocab.base_size, self.vocab.size))

    def embed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Input embeddings. input_ids: [B, T] -> [B, T, H]."""
        return self.model.get_input_embeddings()(input_ids)

    def _prompt_inputs(self, input_ids: torch.LongTensor, soft_prefix: torch.Tensor | None,
                       user: str) -> tuple[dict, Callable[[int], int]]:
        """generate() arguments for the prompt ([1, T] ids in `user`'s vocabulary, or [1, P+T, H]
        embeddings with a soft prefix), and the model position of each base-id position."""
        ids, starts = input_ids[0].tolist(), list(range(input_ids.shape[1]))
        if self.vocab is not None:
            ids, starts = self.vocab.merge_positions(ids, user=user)
        prompt = torch.tensor([ids], device=self.model.device)  # a model trained on a GPU is scored there
        prefix = 0 if soft_prefix is None else soft_prefix.shape[0]

        def position(base: int) -> int:
            return prefix + bisect_right(starts, base) - 1

        if prefix:
            embeds = torch.cat([soft_prefix.to(prompt.device, self.model.dtype).unsqueeze(0), self.embed(prompt)], dim=1)
            # With inputs_embeds the streamer's "prompt" is empty, so nothing is skipped wrongly.
            return dict(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=prompt.device)), position
        return dict(input_ids=prompt, attention_mask=torch.ones_like(prompt)), position

    def _span_attention(self, output, prompt_len: int, new_tokens: int, spans: list[tuple[int, int]]) -> list[float]:
        """Mean attention mass from the generated tokens to each [start, end) model-position span.

        Re-reads only the reply: the generation's cache is cut back to the prompt and the
        reply's tokens are fed once more with eager attention, which returns weights,
        through the decoder alone: the LM head's logits would be a quarter of the pass.
        """
        cache = output.past_key_values
        if new_tokens == 0 or cache is None:
            return [0.0] * len(spans)
        new = output.sequences[0, -new_tokens:]
        excess = cache.get_seq_length() - prompt_len
        if excess > 0:
            cache.crop(-excess)  # a negative count: tokens to remove from the end
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        try:
            out = self.model.get_decoder()(input_ids=new[None], past_key_values=cache, output_attentions=True, use_cache=True)
        finally:
            self.model.set_attn_implementation(previous)
        rows = torch.stack([a[0] for a in out.attentions]).float().mean((0, 1))  # [R, P+R]
        return [float(rows[:, a:b].sum(-1).mean()) if b > a else 0.0 for a, b in spans]

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """fn(*args, **kwargs) run on the model's thread (with its CPU threads); its result or exception.

        Run here instead when this thread is the model's or holds `lock` (the model's
        thread may be waiting for it).
        """
        if threading.current_thread().name.startswith("model") or self.lock._is_owned():
            return fn(*args, **kwargs)
        return self._thread.submit(fn, *args, **kwargs).result()

    def forget_prompts(self, user: str | None = None) -> None:
        """Drop the KV kept of `user`'s last prompt (their memories were deleted); None = every user's."""
        with self.lock:
            self._caches.drop(user)

    def lean_path(self, gen: GenerationConfig) -> LeanLlama | None:
        """The lean decoder when `gen` asks for it and the model is a llama on the CPU, else None."""
        if gen.decode != "lean" or self.model.device.type != "cpu" or not lean_llama.supports(self.model):
            return None
        if self._lean is None:
            base = self.vocab.base_size if self.vocab is not None else self.model.get_output_embeddings().weight.shape[0]
            self._lean = LeanLlama(self.model, base_rows=base)
        return self._lean

    def _processors(self, gen: GenerationConfig, bias: dict[tuple[int, ...], float], barred: list[int],
                    opening: list[int], prompt_length: int) -> LogitsProcessorList:
        """The logits processors `generate` would build for these settings, in its order; `opening`: ids
        barred as the reply's first token, which follows `prompt_length` ids."""
        processors = LogitsProcessorList()
        if bias:
            processors.append(SequenceBiasLogitsProcessor(sequence_bias=bias))
        if barred:
            processors.append(SuppressTokensLogitsProcessor(barred))
        if opening:
            processors.append(SuppressTokensAtBeginLogitsProcessor(opening, prompt_length))
        if gen.do_sample:  # its top_k comes from the model's generation config
            processors.append(TemperatureLogitsWarper(gen.temperature))
            if self.model.generation_config.top_k:
                processors.append(TopKLogitsWarper(self.model.generation_config.top_k))
            processors.append(TopPLogitsWarper(gen.top_p))
        return processors

    def _lean_generate(self, lean: LeanLlama, inputs: dict, gen: GenerationConfig, processors: LogitsProcessorList,
                       streamer: TextIteratorStreamer, cancel: threading.Event, spans: list[tuple[int, int]],
                       user: str, report: Generation, started: float, asks: bool) -> None:
        """Prefill what `user`'s cache lacks of the prompt, then decode token by token into `streamer`; when the
        message `asks`, above the not-told probe's threshold the reply is the adapter's "not told" (fed as decoded)."""
        embeds = inputs.get("inputs_embeds")
        prompt = inputs["input_ids"][0] if embeds is None else None
        length = prompt.shape[0] if embeds is None else embeds.shape[1]
        self._caches.max_bytes = gen.prefix_cache_mb << 20
        cache = self._caches.take(user) if embeds is None else None
        reused = 0
        if cache is not None:
            ids = prompt.tolist()
            reused = min(cache.reusable(ids, self.model.get_input_embeddings().weight, lean.base_rows), len(ids) - 1)
            cache.crop(reused)
        else:
            cache = lean.new_cache(length + gen.max_new_tokens + 1)
        streamer.put(prompt[None] if embeds is None else torch.zeros(1, 0, dtype=torch.long))
        probe = self.probe if asks and embeds is None else None  # a soft prefix is not what it was fitted on
        logits = (lean.forward(cache, ids=prompt[reused:], state_after=probe.layer if probe else None) if embeds is None
                  else lean.forward(cache, embeds=embeds[0]))
        forced: list[int] = []
        if probe is not None:
            report.not_told_probability = probe.not_answered(lean.state)
            if report.not_told_probability > (probe.threshold if gen.not_told_above is None else gen.not_told_above):
                said = self.tokenizer(NOT_TOLD_REPLIES[0], add_special_tokens=False)["input_ids"]
                forced, report.not_told = self._reply_ids(said, gen, user), True
        report.first_token_seconds = time.perf_counter() - started
        mass = torch.zeros(length + gen.max_new_tokens + 1) if spans else None
        # what the logits processors see: the prompt's ids, as in generate (none after a soft prefix)
        seen = prompt[None].clone() if embeds is None else torch.zeros(1, 0, dtype=torch.long)
        fed = 0
        for step in range(gen.max_new_tokens):
            scores = processors(seen, logits[None])
            if forced:
                token = forced[step]
            elif gen.do_sample:
                token = int(torch.multinomial(torch.softmax(scores[0], dim=-1), 1))
            else:
                token = int(scores[0].argmax())
            seen = torch.cat([seen, torch.tensor([[token]])], dim=1)
            streamer.put(torch.tensor([token]))
            report.new_tokens += 1
            if (token in self._eos or cancel.is_set() or report.new_tokens == gen.max_new_tokens
                    or (forced and step == len(forced) - 1)):
                break
            logits = lean.forward(cache, ids=torch.tensor([token]), weights=gen.decode_weights, attention_mass=mass)
            fed += 1
        if spans and report.new_tokens and not cancel.is_set():  # the reply's last token attends too
            lean.forward(cache, ids=torch.tensor([token]), weights=gen.decode_weights, attention_mass=mass, logits=False)
            fed += 1
        streamer.end()
        report.prompt_tokens, report.reused_tokens = length, reused
        if mass is not None and fed:
            mass /= fed * len(lean.layers) * lean.heads
            report.span_attention = [float(mass[a:b].sum()) if b > a else 0.0 for a, b in spans]
        if embeds is None:
            self._caches.put(user, cache)

    def generate(
        self,
        input_ids: torch.LongTensor,
        *,
        soft_prefix: torch.Tensor | None = None,
        gen: GenerationConfig | None = None,
        seed: int | None = None,
        spans: Sequence[tuple[int, int]] = (),
        report: Generation | None = None,
        notes: Sequence[str] = (),
        answer_words: Sequence[str] = (),
        user: str = "",
        asks: bool = False,
    ) -> Iterator[str]:
        """Stream the reply to `input_ids` as text pieces, stopping at EOS.

        Args:
            input_ids: [1, T] prompt ids (e.g. from `chat_ids`).
            soft_prefix: [P, H] vectors placed before the prompt's embeddings; None or
                P == 0 generates from the ids alone.
            gen: max_new_tokens, greedy or sampled, temperature, top_p.
            seed: seeds sampling, for reproducible sampled replies.
            spans: [start, end) ranges of `input_ids` positions whose share of the reply's
                attention `report.span_attention` receives.
            report: filled in with token counts, timings and span attention when the stream ends.
            notes: texts whose words the reply should spell as they do (`note_bias`).
            answer_words: words of the notes a reply answering from them would hold (`note_bias`).
            user: whose reply it is: the prompt is merged into their grown tokens, and the
                reply may emit those and never another user's (`barred_ids`).
            asks: the message asks something: the reply opens with no acknowledgement, and the not-told probe
                may make it "not told" (lean path).
        """
        gen = gen or GenerationConfig()
        report = report if report is not None else Generation()
        cancel = threading.Event()
        decoder = self.vocab if self.vocab is not None else self.tokenizer  # added ids decode to their text
        streamer = TextIteratorStreamer(decoder, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            max_new_tokens=gen.max_new_tokens,
            do_sample=gen.do_sample,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([Cancelled(cancel)]),
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            return_dict_in_generate=True,
        )
        if gen.do_sample:
            kwargs.update(temperature=gen.temperature, top_p=gen.top_p)
        else:  # the model's generation_config may carry sampling defaults that greedy ignores noisily
            kwargs.update(temperature=None, top_p=None, top_k=None)
        error: list[BaseException] = []

        def run() -> None:
            try:
                with self.lock, torch.inference_mode():
                    started = time.perf_counter()
                    inputs, position = self._prompt_inputs(input_ids, soft_prefix, user)
                    moved = [(position(a), position(b - 1) + 1) if b > a else (0, 0) for a, b in spans]
                    # under the lock, so no other user's turn can grow or renumber added ids in between
                    bias, barred = self.note_bias(notes, answer_words, gen, user), self.barred_ids(gen, user)
                    opening = self._acknowledging if asks and not gen.acknowledge_questions else []
                    if seed is not None:
                        torch.manual_seed(seed)
                    lean = self.lean_path(gen)
                    report.path = "lean" if lean is not None else "transformers"
                    if lean is not None:
                        shown = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0  # none after a soft prefix
                        processors = self._processors(gen, bias, barred, opening, shown)
                        self._lean_generate(lean, inputs, gen, processors, streamer, cancel, moved, user, report, started, asks)
                    else:
                        kwargs.update(inputs)
                        if bias:
                            kwargs.update(sequence_bias=bias)
                        if barred:
                            kwargs.update(suppress_tokens=barred)
                        if opening:
                            kwargs.update(begin_suppress_tokens=opening)
                        output = self.model.generate(**kwargs)
                        report.prompt_tokens = next(iter(inputs.values())).shape[1]
                        report.new_tokens = output.sequences.shape[1] - (report.prompt_tokens if "input_ids" in inputs else 0)
                    report.seconds = time.perf_counter() - started
                    if lean is None and spans and not cancel.is_set():
                        started = time.perf_counter()
                        report.span_attention = self._span_attention(output, report.prompt_tokens, report.new_tokens, moved)
                        report.attention_seconds = time.perf_counter() - started
            except BaseException as exc:  # surfaced in the consumer's thread below
                error.append(exc)
                streamer.end()

        worker = self._thread.submit(run)
        finished = False
        try:
            yield from streamer
            finished = True
        finally:
            if not finished:  # the consumer went away: stop generating, skip the attention pass
                cancel.set()
            worker.result()
        if error:
            raise error[0]
