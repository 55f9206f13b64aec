"""Memoria engram store: against the reference package, properties, isolation (persistence: test_storage.py).

The reference is memoria-pytorch 1.1.0 (`import memoria`). `FixedReference` is
that package with the fixes listed in memory/memoria.py's docstring applied to
its long-term search and nothing else, so the differential tests compare our
store with the reference's own STM ranking, firing, lifespan, retyping,
forgetting and final LTM ranking.
"""

from __future__ import annotations

import copy
from collections import Counter

import memoria as reference
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.engram_state import EngramType
from memory.memoria import Memoria, lifespan_delta

# The reference README's tutorial: parameters, sequence length, hidden size, 12 steps.
TUTORIAL = dict(num_reminded_stm=4, stm_capacity=16, ltm_search_depth=5, initial_lifespan=3, num_final_ltms=4)
LENGTH, HIDDEN, STEPS = 8, 64, 12


class FixedReference(reference.Memoria):
    """The reference with deviations 1-5 applied to its long-term search (batch 1 only)."""

    def _find_initial_longterm_memory(self, nearest_shortterm_memory_indices: torch.Tensor) -> torch.Tensor:
        counts = self.engrams.induce_counts[0]
        longterm = self.engrams.longterm_memory_mask[0]
        seeds = set()
        for stm in nearest_shortterm_memory_indices[0].tolist():
            if stm < 0:  # fix 1: an unselected slot seeds nothing
                continue
            linked = torch.where(longterm, counts[stm], 0)
            if linked.max() > 0:  # 4: zero is no link; 5: argmax takes the first (oldest) of ties
                seeds.add(int(linked.argmax()))
        return torch.tensor(sorted(seeds), dtype=torch.long).reshape(1, -1)

    def _search_longterm_memories_with_initials(self, initial: torch.Tensor, longterm_memory) -> torch.Tensor:
        counts = self.engrams.induce_counts[0]  # fix 2: positions among all engrams
        longterm = self.engrams.longterm_memory_mask[0]
        paths = initial[0].tolist()
        found, visited = set(paths), set(paths)
        for _ in range(self.ltm_search_depth):
            reachable = longterm.clone()
            reachable[list(visited)] = False
            steps = []
            for path in paths:
                linked = torch.where(reachable, counts[path], 0)
                if linked.max() > 0:  # 4: a path without an unvisited linked LTM stops
                    steps.append(int(linked.argmax()))
            paths = steps
            visited |= set(steps)
            found |= set(steps)
        return torch.tensor(sorted(found), dtype=torch.long).reshape(1, -1)  # fix 3: no seed, nothing found


def reference_state(ref: reference.Memoria) -> dict:
    """id -> (type, lifespan, age, fire count, links) of a batch-1 reference."""
    engrams = ref.engrams
    if len(engrams) == 0:
        return {}
    ids = engrams.engram_ids[0].tolist()
    state = {}
    for pos, engram_id in enumerate(ids):
        counts = engrams.induce_counts[0, pos].tolist()
        links = {ids[q]: c for q, c in enumerate(counts) if q != pos and c > 0}
        state[engram_id] = (
            int(engrams.engrams_types[0, pos]),
            float(engrams.lifespan[0, pos]),
            int(engrams.age[0, pos]),
            counts[pos],
            links,
        )
    return state


def our_state(memoria: Memoria, user: str) -> dict:
    return {e.id: (int(e.type), e.lifespan, e.age, e.fire_count, e.links) for e in memoria.engrams(user)}


def reference_ids(ref: reference.Memoria, positions: torch.Tensor) -> list[int]:
    return [int(ref.engrams.engram_ids[0, p]) for p in positions[0].tolist() if p >= 0]


def tutorial_inputs() -> tuple[list[torch.Tensor], torch.Tensor]:
    """The tutorial's data and lifespan gains, drawn once so both sides see the same values.

    Gains are per engram id (the two sides list reminded engrams in different
    orders): none at step 1, +5 at step 2, then uniform 0..5 as in the README.
    """
    generator = torch.Generator().manual_seed(42)
    data = [torch.rand(1, LENGTH, HIDDEN, generator=generator) for _ in range(STEPS)]
    gains = torch.randint(0, 6, (STEPS, STEPS * LENGTH), generator=generator).float()
    gains[0], gains[1] = 0.0, 5.0
    return data, gains


def reference_gains(ref: reference.Memoria, positions: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    ids = ref.engrams.engram_ids[0, positions[0].clamp(min=0)]
    return torch.where(positions[0] >= 0, gains[ids], 0.0)[None]


def test_tutorial_matches_reference_with_documented_fixes():
    data, gains = tutorial_inputs()
    ours = Memoria(**TUTORIAL, max_links=128)  # wider than any engram's partner count here: no capping
    fixed = FixedReference(**TUTORIAL, track_age=True, track_id=True)
    kinds = Counter()
    for step in range(STEPS):
        ours.add_working_memory(data[step], user="u")
        fixed.add_working_memory(data[step])
        assert our_state(ours, "u") == reference_state(fixed)
        _, indices = ours.remind()
        _, positions = fixed.remind()
        assert sorted(indices[0].tolist()) == sorted(reference_ids(fixed, positions)), f"step {step + 1}"
        kinds.update(e.type.name for e in ours.engrams("u", indices[0].tolist()))
        ours.adjust_lifespan_and_memories(indices, gains[step][indices])
        fixed.adjust_lifespan_and_memories(positions, reference_gains(fixed, positions, gains[step]))
        assert our_state(ours, "u") == reference_state(fixed), f"step {step + 1}"
    # the walk through long-term links was exercised, not only STM similarity
    assert kinds["SHORTTERM"] > 0 and kinds["LONGTERM"] > 0


def test_reference_differs_only_where_its_bugs_hit():
    """Per step, the unpatched reference from the same state as ours (= FixedReference)."""
    data, gains = tutorial_inputs()
    fixed = FixedReference(**TUTORIAL, track_age=True, track_id=True)
    hits = Counter()
    for step in range(STEPS):
        fixed.add_working_memory(data[step])
        engrams = fixed.engrams
        types = engrams.engrams_types[0]
        ids = engrams.engram_ids[0]
        stm = set(ids[types == EngramType.SHORTTERM].tolist())
        ltm = set(ids[types == EngramType.LONGTERM].tolist())
        # bug 2 cannot hit at batch 1: the LTMs are always a prefix, so local = global positions
        assert (types[: len(ltm)] == EngramType.LONGTERM).all()
        buggy = reference.Memoria(**TUTORIAL, track_age=True, track_id=True)
        buggy.engrams = copy.deepcopy(engrams)
        if ltm and len(stm) > TUTORIAL["num_reminded_stm"]:
            # bug 1: an unselected STM slot (-1) reads the newest engram's row, which links to
            # no LTM, and still seeds one
            newest_links = engrams.induce_counts[0, -1][types == EngramType.LONGTERM]
            assert newest_links.max() == 0
            seed = buggy._find_initial_longterm_memory(torch.tensor([[-1]]))
            assert types[seed[0, 0]] == EngramType.LONGTERM
            assert fixed._find_initial_longterm_memory(torch.tensor([[-1]])).numel() == 0
            hits["bug 1"] += 1
        torch.manual_seed(step)  # the reference breaks seed ties with torch's global generator
        _, buggy_positions = buggy.remind()
        _, positions = fixed.remind()
        theirs = set(reference_ids(buggy, buggy_positions))
        ours = set(reference_ids(fixed, positions))
        if not stm and not ltm:
            assert theirs == ours == set()
        elif not ltm:
            # bug 3: with no LTM to find, position 0 (the oldest engram, an STM) is reminded as an LTM
            assert theirs == ours | {int(ids[0])}
            hits["bug 3"] += 1
        else:
            assert theirs & stm == ours & stm  # STM ranking is untouched by the bugs
            assert (theirs ^ ours) <= ltm  # the differences are long-term engrams only
            hits["LTMs differ"] += theirs != ours
        fixed.adjust_lifespan_and_memories(positions, reference_gains(fixed, positions, gains[step]))
    assert hits["bug 1"] > 0 and hits["bug 3"] > 0 and hits["LTMs differ"] > 0


def test_reference_bug_2_walks_ltm_local_positions_at_batch_2():
    """A batch-2 state the reference reaches: the shorter row is padded with NULL engrams in front."""
    null, ltm, stm, wm = (int(t) for t in (0, EngramType.LONGTERM, EngramType.SHORTTERM, EngramType.WORKING))
    types = torch.tensor([[null, null, ltm, ltm, stm, wm], [ltm, ltm, stm, stm, stm, wm]], dtype=torch.uint8)
    lifespan = torch.where(types == null, -1.0, 3.0)
    counts = torch.zeros(2, 6, 6, dtype=torch.int32)
    for row, (a, b, c) in enumerate([(4, 2, 3), (2, 0, 1)]):  # row's STM a - LTM b - LTM c, all linked
        for i, j in [(a, b), (b, c), (a, c)]:
            counts[row, i, j] = counts[row, j, i] = 2
    buggy = reference.Memoria(num_reminded_stm=1, stm_capacity=3, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=2)
    # equal vectors: every engram is at distance 0 from the working memory, the NULL padding's
    # zero vectors are not, so row 0 reminds its STM and then its STM's linked LTMs
    buggy.engrams = reference.Engrams(torch.ones(2, 6, 4), counts, types, lifespan)
    _, positions = buggy.remind()
    # row 0's LTMs sit at positions 2, 3, but its walk returns their LTM-local positions 0, 1,
    # which are read as positions among all engrams: the two NULL engrams are reminded
    assert types[0, positions[0][positions[0] >= 0]].tolist().count(null) == 2


def test_readme_tutorial_runs_at_batch_1():
    """The README's sequence at batch 1 runs and returns ids, vectors and lifespans as documented."""
    torch.manual_seed(42)
    memoria = Memoria(**TUTORIAL)
    memoria.add_working_memory(torch.rand(1, LENGTH, HIDDEN))
    memories, indices = memoria.remind()
    assert memories.shape == (1, 0, HIDDEN) and indices.shape == (1, 0)
    memoria.adjust_lifespan_and_memories(indices, torch.zeros_like(indices, dtype=torch.float))
    assert {(e.type, e.lifespan) for e in memoria.engrams("0")} == {(EngramType.SHORTTERM, 2.0)}
    data = torch.rand(1, LENGTH, HIDDEN)
    ids = memoria.add_working_memory(data)
    assert ids.tolist() == [list(range(LENGTH, 2 * LENGTH))]
    memories, indices = memoria.remind()
    assert indices.shape == (1, TUTORIAL["num_reminded_stm"])  # no LTM yet, no padding
    assert torch.equal(memories[0], memoria.vectors("0", indices[0].tolist()))
    memoria.adjust_lifespan_and_memories(indices, torch.full(indices.shape, 5.0))
    lifespans = {e.id: e.lifespan for e in memoria.engrams("0")}
    assert all(lifespans[i] == 6.0 for i in indices[0].tolist())
    assert sorted(lifespans.values()).count(1.0) == LENGTH - TUTORIAL["num_reminded_stm"]


# ---- property tests -------------------------------------------------------------------------

SMALL = 8  # hidden size of the property tests

configs = st.one_of(
    st.fixed_dictionaries(  # anything, edge cases included
        dict(
            num_reminded_stm=st.integers(0, 3),
            stm_capacity=st.integers(0, 4),
            ltm_search_depth=st.integers(0, 3),
            initial_lifespan=st.integers(1, 6),
            num_final_ltms=st.integers(0, 3),
        )
    ),
    st.fixed_dictionaries(  # long-lived engrams that reach long-term memory and get walked to
        dict(
            num_reminded_stm=st.integers(1, 3),
            stm_capacity=st.integers(1, 3),
            ltm_search_depth=st.integers(1, 3),
            initial_lifespan=st.integers(4, 8),
            num_final_ltms=st.integers(1, 3),
        )
    ),
)
# a turn: engrams added (one or two add calls), whether remind runs (mostly, so that links form)
turns = st.lists(
    st.tuples(st.lists(st.integers(1, 3), min_size=1, max_size=2), st.sampled_from([True, True, True, False])),
    min_size=1,
    max_size=10,
)


def gains_table(seed: int, count: int) -> torch.Tensor:
    """Gains per engram id in quarters, which float32 and float64 both hold exactly."""
    return torch.randint(0, 13, (count,), generator=torch.Generator().manual_seed(seed)).float() / 4


def run_turn(memoria: Memoria, user: str, widths: list[int], remind: bool, generator: torch.Generator, gains: torch.Tensor) -> tuple[set[int], set[int]]:
    """One turn for `user`; returns (working ids, reminded ids)."""
    working = set()
    for width in widths:
        ids = memoria.add_working_memory(
            torch.randn(1, width, SMALL, generator=generator), user=user, texts=[[f"span {width}"] * width]
        )
        working |= set(ids[0].tolist())
    indices = memoria.remind()[1] if remind else torch.zeros(1, 0, dtype=torch.long)
    memoria.adjust_lifespan_and_memories(indices, gains[indices.clamp(min=0) % len(gains)])
    return working, set(indices[0].tolist())


@settings(max_examples=40, deadline=None)
@given(config=configs, script=turns, seed=st.integers(0, 2**16))
def test_any_turn_sequence_matches_reference_with_fixes(config, script, seed):
    ours = Memoria(**config, max_links=64)
    fixed = FixedReference(**config, track_age=True, track_id=True)
    generator = torch.Generator().manual_seed(seed)
    gains = gains_table(seed, 64)
    for widths, remind in script:
        for width in widths:
            data = torch.randn(1, width, SMALL, generator=generator)
            ours.add_working_memory(data, user="u")
            fixed.add_working_memory(data)
        indices = torch.zeros(1, 0, dtype=torch.long)
        positions = torch.zeros(1, 0, dtype=torch.long)
        if remind:
            _, indices = ours.remind()
            _, positions = fixed.remind()
            assert sorted(indices[0].tolist()) == sorted(reference_ids(fixed, positions))
        ours.adjust_lifespan_and_memories(indices, gains[indices % 64])
        fixed.adjust_lifespan_and_memories(positions, reference_gains(fixed, positions, gains))
        assert our_state(ours, "u") == reference_state(fixed)


@settings(max_examples=40, deadline=None)
@given(config=configs, script=turns, seed=st.integers(0, 2**16), max_links=st.sampled_from([1, 2, 64]))
def test_lifespans_types_and_links_stay_consistent(config, script, seed, max_links):
    """Invariants against a plain tally of what fired, including when links are capped."""
    memoria = Memoria(**config, max_links=max_links)
    generator = torch.Generator().manual_seed(seed)
    gains = gains_table(seed, 64)
    fires, cofires, lifespans, born = Counter(), Counter(), {}, {}
    step = 0
    for widths, remind in script:
        working, reminded = run_turn(memoria, "u", widths, remind, generator, gains)
        for i in working:
            lifespans[i], born[i] = float(config["initial_lifespan"]), step
        if remind:
            fired = working | reminded
            fires.update(fired)
            cofires.update((a, b) for a in fired for b in fired if a != b)
        for i in reminded:
            lifespans[i] += float(gains[i % 64])
        step += 1
        lifespans = {i: life - 1 for i, life in lifespans.items() if life - 1 > 0}
        engrams = {e.id: e for e in memoria.engrams("u")}
        assert set(engrams) == set(lifespans)
        stm = sorted(i for i, e in engrams.items() if e.type == EngramType.SHORTTERM)
        ltm = sorted(i for i, e in engrams.items() if e.type == EngramType.LONGTERM)
        assert len(stm) + len(ltm) == len(engrams)  # no working memory left after adjust
        assert len(stm) <= config["stm_capacity"]
        assert not (stm and ltm) or ltm[-1] < stm[0]  # the oldest short-term engrams moved first
        for i, e in engrams.items():
            assert e.lifespan == lifespans[i] > 0
            assert e.age == step - born[i]
            assert e.fire_count == fires[i]
            assert len(e.links) <= max_links and i not in e.links
            for j, count in e.links.items():
                assert j in engrams and 1 <= count <= cofires[i, j]
            if max_links >= 64:  # never capped here: exact, symmetric co-fire counts
                assert e.links == {j: cofires[i, j] for j in engrams if cofires[i, j]}


@settings(max_examples=30, deadline=None)
@given(config=configs, script=st.lists(st.tuples(st.sampled_from(["A", "B", "AB"]), st.integers(1, 3), st.booleans()), min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_users_never_see_each_others_engrams(config, script, seed):
    """B's memory behaves exactly as if A did not exist, and holds only B's engrams."""
    shared = Memoria(**config)
    alone = {name: Memoria(**config) for name in "AB"}
    generator = torch.Generator().manual_seed(seed)
    gains = gains_table(seed, 64)
    for who, width, remind in script:
        users = list(who)
        data = torch.randn(len(users), width, SMALL, generator=generator)
        texts = [[f"{name}:{i}" for i in range(width)] for name in users]
        shared.add_working_memory(data, user=users, texts=texts)
        for row, name in enumerate(users):
            alone[name].add_working_memory(data[row : row + 1], user=name, texts=texts[row : row + 1])
        indices = torch.full((len(users), 0), -1)
        if remind:
            memories, indices = shared.remind()
            for row, name in enumerate(users):
                solo_memories, solo_indices = alone[name].remind()
                mine = indices[row][indices[row] >= 0]
                assert torch.equal(mine, solo_indices[0])
                assert torch.equal(memories[row, : len(mine)], solo_memories[0])
                assert all(e.text.startswith(f"{name}:") for e in shared.engrams(name, mine.tolist()))
        shared.adjust_lifespan_and_memories(indices, gains[indices.clamp(min=0) % 64] * (indices >= 0))
        for row, name in enumerate(users):
            mine = indices[row : row + 1]
            mine = mine[mine >= 0][None]
            alone[name].adjust_lifespan_and_memories(mine, gains[mine % 64])
        for name in "AB":
            assert our_state(shared, name) == our_state(alone[name], name)


def test_capped_links_keep_the_strongest_then_the_newest():
    memoria = Memoria(num_reminded_stm=2, stm_capacity=8, ltm_search_depth=0, initial_lifespan=9, num_final_ltms=0, max_links=2)
    for _ in range(2):  # engrams 0, 1 fire together; then 2, 3 fire with the reminded 0, 1
        memoria.add_working_memory(torch.rand(1, 2, 4), user="u")
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.zeros(indices.shape))
    links = {e.id: e.links for e in memoria.engrams("u")}
    assert links[0] == {1: 2, 3: 1}  # 0-1 fired twice; of 2 and 3 (once each) the newer stays
    assert links[2] == {3: 1, 1: 1}  # all once: the two newest partners
    assert memoria.engrams("u", [0])[0].fire_count == 2


def test_memory_grows_linearly_with_engrams():
    memoria = Memoria(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=1e9, num_final_ltms=4, max_links=8)
    # vector, 8 links of (int64 id, int32 count), 6 int64 + 1 uint8 columns and the id -> slot table
    per_engram = SMALL * 4 + 8 * 12 + 6 * 8 + 1 + 8
    generator = torch.Generator().manual_seed(0)
    for count in (1_000, 8_000):
        while memoria.size("u") < count:
            memoria.add_working_memory(torch.randn(1, 100, SMALL, generator=generator), user="u")
            _, indices = memoria.remind()
            memoria.adjust_lifespan_and_memories(indices, torch.zeros(indices.shape))
        assert memoria.nbytes("u") <= 2 * count * per_engram  # at most doubled by spare capacity


def test_lifespan_delta_rewards_use_like_the_paper():
    # an engram used as much as the average gains `scale`; unused ones gain nothing
    delta = lifespan_delta(torch.tensor([[0.2, 0.2, 0.6], [0.0, 0.0, 0.0]]), scale=8.0)
    assert torch.allclose(delta, torch.tensor([[4.8, 4.8, 14.4], [0.0, 0.0, 0.0]]))
    assert lifespan_delta(torch.tensor([0.01, 0.03]), scale=2.0).tolist() == pytest.approx([1.0, 3.0])


def test_listed_twice_gains_both_deltas_and_no_working_memory_reminds_nothing():
    memoria = Memoria(**TUTORIAL)
    memoria.add_working_memory(torch.rand(1, 1, 4), user="ann")
    memoria.adjust_lifespan_and_memories(torch.tensor([[0, 0]]), torch.tensor([[1.0, 2.0]]))
    assert memoria.engrams("ann")[0].lifespan == TUTORIAL["initial_lifespan"] + 3 - 1
    _, indices = memoria.remind()  # deviation 13: no working memory, nothing to compare with
    assert indices.shape == (1, 0) and memoria.engrams("ann")[0].fire_count == 0


def test_bad_calls_are_refused_with_a_reason():
    memoria = Memoria(**TUTORIAL)
    with pytest.raises(ValueError, match="add_working_memory first"):
        memoria.remind()
    memoria.add_working_memory(torch.rand(1, 2, 4), user="ann")
    with pytest.raises(ValueError, match="4-dim"):
        memoria.add_working_memory(torch.rand(1, 2, 5), user="ann")
    with pytest.raises(ValueError, match="not this user's live engrams"):
        memoria.adjust_lifespan_and_memories(torch.tensor([[7]]), torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="names a user twice"):
        memoria.add_working_memory(torch.rand(2, 1, 4), user=["ann", "ann"])
    with pytest.raises(ValueError, match="must be >= 0"):
        Memoria(num_reminded_stm=-1, stm_capacity=1, ltm_search_depth=1, initial_lifespan=1, num_final_ltms=1)


def four_turns() -> Memoria:
    """User "ann" after four turns of three engrams each (texts "t<turn>.<i>")."""
    memoria = Memoria(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=20, num_final_ltms=2)
    g = torch.Generator().manual_seed(0)
    for turn in range(4):
        memoria.add_working_memory(torch.randn(1, 3, 8, generator=g), user="ann", texts=[[f"t{turn}.{i}" for i in range(3)]])
        _, reminded = memoria.remind(user="ann")
        memoria.adjust_lifespan_and_memories(reminded, torch.ones_like(reminded, dtype=torch.float), user="ann")
    return memoria


def test_forget_removes_engrams_with_their_links():
    memoria = four_turns()
    before = {e.id for e in memoria.engrams("ann")}
    assert memoria.forget([1, 4, 99], user="ann") == [1, 4]
    assert memoria.forget([1], user="ann") == [] and memoria.forget([0], user="bob") == []
    left = memoria.engrams("ann")
    assert {e.id for e in left} == before - {1, 4}
    assert all(not set(e.links) & {1, 4} for e in left)


NAMED = ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Oriel's pet is Bram.", "Oriel moved to Quillmere."]


def named_engrams() -> Memoria:
    """User "u" with the four NAMED engrams, user "v" with one that names Oriel too."""
    memoria = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3)
    memoria.add_working_memory(torch.randn(1, 4, SMALL), user="u", texts=[NAMED])
    memoria.add_working_memory(torch.randn(1, 1, SMALL), user="v", texts=[["Oriel is someone else's friend."]])
    return memoria


def test_engrams_are_found_by_the_names_they_mention():
    memoria = named_engrams()
    # most names held first, newest first among equals; another user's engrams never
    assert memoria.mentioning(["oriel"], user="u", limit=10) == [3, 2, 0]
    assert memoria.mentioning(["oriel", "bram"], user="u", limit=10) == [2, 3, 1, 0]
    assert memoria.mentioning(["oriel"], user="u", limit=2) == [3, 2]
    assert memoria.mentioning(["nobody"], user="u", limit=10) == [] and memoria.mentioning(["oriel"], user="w", limit=5) == []
    memoria.forget([3], user="u")
    assert memoria.mentioning(["oriel"], user="u", limit=10) == [2, 0]
