"""Region tracker of one camera stream: each frame's SAM regions -> persistent track identities.

Built on what the strong multi-object trackers do, for masks instead of boxes:

- **Motion** (SORT/ByteTrack): a constant-velocity Kalman state per track box
  (:mod:`.motion`); the track's last full mask is moved to the predicted place before it is
  compared with the regions (exact mask IoU, :mod:`.masks`). Frames the node dropped count in
  the prediction (``FrameCues.frames_elapsed``), never as misses.
- **Camera motion** (BoT-SORT): the frame-to-frame camera transform
  (``FrameCues.camera_motion``, from :mod:`.camera_motion`) moves every state first.
- **Two-stage association** (ByteTrack), each an optimal one-to-one assignment
  (``scipy.optimize.linear_sum_assignment``):
  A. confident regions (score = predicted IoU x stability >= ``high_score``) with confirmed
     tracks (seen or lost): mask IoU >= ``iou_gate``, or re-identification: appearance (SAM
     token, and CLIP region embedding when the classifier computed one) >= ``similarity_gate``
     for a region within the track's reach that the appearance singles out (each the other's
     best candidate by :data:`APPEARANCE_MARGIN`; with untrained tokens that look alike this
     leaves only lone candidates);
  B. every region left with the confirmed tracks left: IoU >= ``iou_gate``, or an occluded
     object's visible piece: a region mostly inside the track's predicted mask while the rest
     of that mask is hidden (covered by other regions that are not its parts, or by regions
     other tracks took, or outside the image). A part of an object whose whole was just missed
     (nothing hides the rest) never takes the whole's track;
  C. regions left with tentative tracks: IoU >= ``iou_gate``, or confident ones re-identified as
     in A (among tentative tracks);
  D. confident regions left with confirmed tracks seen in the previous frame and left too: a
     region of about the track's size (area ratio within :data:`DISPLACED_SIZE`) overlapping
     its predicted mask at IoU >= :data:`DISPLACED_IOU`, each the other's best by
     :data:`DISPLACED_MARGIN`, appearance >= ``similarity_gate`` (a displaced view: a jolt the
     camera estimate missed, a change of motion; a part, or another object where a missed one
     was expected, does not qualify).
  Score of a pair: ``(1 - w) * IoU + w * appearance + rules.LABEL_WEIGHT * label agreement`` (labels
  are a soft cost, never a gate).
- **Occlusion**: an observation that shows only part of the predicted mask (less than
  :data:`PARTIAL_AREA` of it) because the rest is hidden (by other regions, its own parts too,
  or the image edge) keeps the track's full mask and box (the prediction goes on) instead of
  shrinking it: partial views taken as whole ones shrank a crossing object's mask frame by
  frame until the object, seen whole again, no longer overlapped its own track.
- **Parts** (:mod:`.parts`): a confirmed track no region took that the frame shows as its
  parts only (SAM's whole/part ambiguity) is not missed; its box follows the parts.
- **Births** (:mod:`.births`): a region no track takes scoring >= ``low_score`` opens a
  tentative track, confirmed (given its id) after ``birth_hits`` hits, two more if its mean score
  is below the stream's birth bar (blobs, split pieces, partly hidden objects), one more per
  frame it missed while tentative (it dies at its second consecutive miss). A track confirmed
  where a lost confirmed track should be (same object: predicted-mask IoU >=
  :data:`.rules.MERGE_IOU`, re-identified, or the only lost track where the motion model expects
  it whose appearance agrees, :func:`.rules.lost_duplicate`) is taken over by the older track:
  one object never holds two tracks, and the older id stays.
- **Deaths**: a confirmed track dies after ``death_misses`` processed frames unseen; live tracks
  are capped at :data:`MAX_TRACKS_PER_REGION` x the most regions of the last :data:`CAP_WINDOW`
  frames, at least :data:`MIN_TRACK_CAP` (unseen tentative tracks go first, then the longest-lost).

Track ids come from an id source shared by every camera of the pipeline: never reused.
(:class:`.track.Track`, :class:`.track.FrameCues` and :class:`.track.TrackerSettings` are
re-exported here.)
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from perception_nodes.core.tracking import motion
from perception_nodes.core.tracking.births import BirthBar, hits_needed
from perception_nodes.core.tracking.ids import TrackIdSource
from perception_nodes.core.tracking.masks import MaskCrop, placed_all
from perception_nodes.core.tracking.pairs import (
    PairCues,
    RegionCues,
    TrackCues,
    pair_cues,
    region_cues,
    singled_out,
)
from perception_nodes.core.tracking.parts import follow_parts
from perception_nodes.core.tracking.rules import (
    assigned,
    hidden_of,
    left,
    lost_duplicate,
    merged,
    merged_rows,
    pair_score,
    reidentified,
)
from perception_nodes.core.tracking.track import FrameCues, Track, TrackerSettings
from perception_nodes.core.types import Segmentation

__all__ = ["FrameCues", "RegionTracker", "Track", "TrackerSettings", "TrackIdSource"]

PIECE_COVER = 0.7  # a visible piece: this share of the region inside the predicted mask
PIECE_AREA = 0.7  # ... and smaller than this share of it
PARTIAL_AREA = 0.7  # a matched view smaller than this share of the mask may be partial
PIECE_HIDDEN = 0.5  # ... and this share of the rest hidden by other regions or the image edge
OCCLUDER_INSIDE = 0.6  # a region this much inside the predicted mask: a part, not an occluder
PIECE_SCORE = 0.5  # IoU credited to a visible-piece match
DISPLACED_IOU = 0.3  # stage D: IoU of a displaced view with its track's predicted mask ...
DISPLACED_SIZE = 0.7  # ... of about its size (area ratio within [0.7, 1 / 0.7])
DISPLACED_MARGIN = 0.1  # ... each the other's best by this IoU margin
TENTATIVE_MISSES = 1  # a tentative track survives one miss, and then needs one hit more
MAX_TRACKS_PER_REGION = 1.5
MIN_TRACK_CAP = 4
CAP_WINDOW = 30  # frames (1 s at 30 Hz) whose largest region count sets the cap


class RegionTracker:
    """Tracks of one camera stream; :meth:`update` once per processed frame.

    ``tracks``: the live tracks; row ``i`` of ``states`` (their boxes' Kalman states, updated
    in batch), of ``zooms`` (``(T,)`` camera scale change since ``tracks[i].crop`` was seen) and
    of ``tokens`` (``(T, D)`` unit running SAM tokens) belongs to ``tracks[i]``.
    """

    def __init__(self, ids: TrackIdSource | None = None) -> None:
        self.ids = ids or TrackIdSource()
        self.tracks: list[Track] = []
        self.states = motion.empty_states()
        self.zooms = np.zeros(0)
        self.tokens = np.zeros((0, 0), np.float32)
        self.image_size: tuple[int, int] | None = None
        self._position_std = np.zeros(0)  # (T,) of the predicted states
        self._born: dict[int, tuple] = {}  # id(track) -> (state, token) of a confirmed birth
        self._recent_counts: deque[int] = deque(maxlen=CAP_WINDOW)
        self._bar, self._sure = BirthBar(), 1.0  # the birth bar (.births), this frame's level

    def update(self, seg: Segmentation, settings: TrackerSettings,
               cues: FrameCues | None = None) -> list[Track]:  # fmt: skip
        """Associate the frame's regions with tracks; returns the track of each region (same
        order; a region that opens no track gets a throwaway unconfirmed one)."""
        cues = cues or FrameCues()
        if self.image_size != tuple(seg.image_size):
            self.tracks, self.image_size = [], tuple(seg.image_size)
        if self.tracks and len(seg) and seg.tokens.shape[1:] != self.tokens.shape[1:]:
            # another SAM (tokens of another size): the running tokens are forgotten (zeros,
            # no appearance until seen again); the tracks go on by overlap
            self.tokens = np.zeros((len(self.tracks), *seg.tokens.shape[1:]), np.float32)
        self._predict(cues)
        regions = region_cues(seg, cues, settings.high_score)
        tracked = self._track_cues(cues.label_version, regions.labels is not None)
        pairs = pair_cues(regions, tracked, settings.iou_gate)
        high = regions.scores >= settings.high_score
        opens = regions.scores >= settings.low_score  # may open and continue tentative tracks
        matches = self._associate(regions, pairs, high, opens, settings)
        self._sure = self._bar.step(settings.sure_score, regions.scores, matches, self.tracks)
        out: list[Track | None] = [None] * len(seg)
        matched = np.zeros(pairs.compared.shape, bool)
        matched[list(matches), list(matches.values())] = True
        pairs.compare(matched)
        fresh = self._observe(matches, regions, pairs, tracked.crops, settings)
        for r, t in matches.items():
            out[r] = self.tracks[t]
        born = self._births(out, regions, pairs, matches, high, settings)
        born_ids = {id(t) for t in born}
        fresh += [r for r, t in enumerate(out) if id(t) in born_ids and t.confirmed]
        seen = set(matches.values())
        seen |= follow_parts(self.tracks, self.states, seen, pairs)
        self._age_unmatched(seen, settings)
        kept = [r for r, t in enumerate(out) if id(t) in born_ids and opens[r]]
        if kept:
            self._add([out[r] for r in kept], motion.init_states(regions.boxes[kept]),
                      regions.tokens[kept])  # fmt: skip
        self._merge_duplicates(out, fresh, settings)
        self._born = {}
        self._cap(out, len(seg))
        return out  # type: ignore[return-value]

    def _add(self, tracks: list[Track], states: motion.BoxStates, tokens: np.ndarray) -> None:
        """Append ``tracks`` with their states, ``(K, D)`` tokens and zoom 1."""
        had = bool(self.tracks)
        self.tracks += tracks
        self.states = motion.BoxStates.stack([self.states, states])
        self.zooms = np.concatenate([self.zooms, np.ones(len(tracks))])
        self.tokens = np.concatenate([self.tokens, tokens]) if had else tokens.copy()

    def _keep(self, keep: list[int]) -> None:
        """Keep the tracks of the indices ``keep`` (ascending) and their rows."""
        if len(keep) < len(self.tracks):
            self.tracks = [self.tracks[i] for i in keep]
            self.states, self.zooms = self.states.select(keep), self.zooms[keep]
            self.tokens = self.tokens[keep]

    # --- prediction -------------------------------------------------------------------------

    def _predict(self, cues: FrameCues) -> None:
        """Every state moved by the camera and predicted (in batch, one row per track)."""
        if not self.tracks:
            self.states, self.zooms = motion.empty_states(), np.zeros(0)
            self.tokens, self._position_std = np.zeros((0, 0), np.float32), np.zeros(0)
            return
        states = motion.warp(self.states, cues.camera_motion)
        self.states = motion.predict(states, cues.frames_elapsed)
        self._position_std = motion.position_std(self.states)
        lin = np.asarray(cues.camera_motion, np.float64)[:, :2]
        self.zooms = self.zooms * math.sqrt(abs(float(np.linalg.det(lin))))

    def _track_cues(self, version: int, with_labels: bool) -> TrackCues:
        """The tracks as predicted by :meth:`_predict`; their labels only ``with_labels`` (the
        regions have labels to agree with; -1 otherwise)."""
        t = self.tracks
        labels = [tr.label(version) for tr in t] if with_labels else [-1] * len(t)
        return TrackCues(
            crops=placed_all([tr.crop for tr in t], self.states.x[:, :2], self.zooms.tolist()),
            tokens=self.tokens if t else np.zeros((0, 0), np.float32),
            embeddings=[tr.embedding for tr in t],
            labels=np.array(labels, np.int64),
            misses=np.array([tr.misses for tr in t], np.float64),
            position_std=self._position_std,
        )

    # --- association ------------------------------------------------------------------------

    def _associate(self, regions, pairs: PairCues, high, opens, settings) -> dict[int, int]:
        """``{region: track}`` from stages A, B and C (see the module docstring)."""
        confirmed = np.array([t.confirmed for t in self.tracks], bool)
        score = pair_score(pairs, settings.similarity_weight)
        iou_ok = pairs.iou >= settings.iou_gate
        gate = settings.similarity_gate
        reid = reidentified(pairs, confirmed, gate) | reidentified(pairs, ~confirmed, gate)
        stage_a = (iou_ok | reid) & high[:, None] & confirmed[None]
        matches = assigned(1.0 - score, stage_a, {})
        stage_b = left(matches, confirmed, len(high))
        pieces = self._visible_pieces(regions, pairs, stage_b & ~iou_ok, set(matches))
        piece_score = score + (PIECE_SCORE - pairs.iou) * (1 - settings.similarity_weight)
        cost_b = 1.0 - np.where(iou_ok, score, piece_score)
        matches = assigned(cost_b, stage_b & (iou_ok | pieces), matches)
        stage_c = iou_ok & opens[:, None] | reid & high[:, None]
        stage_c &= left(matches, ~confirmed, len(high))
        matches = assigned(1.0 - score, stage_c, matches)
        return self._displaced(regions, pairs, high, confirmed, matches, gate)

    def _displaced(self, regions: RegionCues, pairs: PairCues, high, confirmed, matches, gate):
        """Stage D: a confident region left over of about the size of a confirmed track seen in
        the previous frame and left over too (see the module docstring; below the gate: the
        prediction or the camera estimate was off); ``gate``: the similarity gate."""
        seen = confirmed & np.array([t.misses == 0 for t in self.tracks], bool)
        ratio = regions.areas[:, None] / np.maximum(pairs.t_areas[None], 1.0)
        cand = left(matches, seen, len(high)) & high[:, None]
        cand &= (ratio >= DISPLACED_SIZE) & (ratio <= 1.0 / DISPLACED_SIZE)
        if not cand.any():
            return matches
        pairs.compare(cand)
        iou = np.where(cand, pairs.iou, 0.0)
        ok = (iou >= DISPLACED_IOU) & singled_out(iou, DISPLACED_MARGIN, 0.0)
        ok &= pairs.appearance >= gate  # appearance must agree (look-alikes always do)
        return assigned(1.0 - iou, ok, matches)

    def _visible_pieces(self, regions: RegionCues, pairs: PairCues, allowed, objects) -> np.ndarray:
        """``(R, T)`` True where the region is the visible piece of the occluded track
        (``objects``: regions other tracks took)."""
        small = regions.areas[:, None] < PIECE_AREA * pairs.t_areas[None]
        candidates = allowed & small & (pairs.cover_bound >= PIECE_COVER)
        pairs.compare(candidates)
        candidates &= pairs.cover >= PIECE_COVER
        out = np.zeros(allowed.shape, bool)
        for r, t in zip(*np.nonzero(candidates)):
            hidden = hidden_of(r, pairs.crops[t], regions, OCCLUDER_INSIDE, objects)
            out[r, t] = hidden >= PIECE_HIDDEN
        return out

    # --- life cycle ---------------------------------------------------------------------------

    def _observe(self, matches: dict[int, int], regions: RegionCues, pairs: PairCues,
                 crops: list[MaskCrop], settings) -> list[int]:  # fmt: skip
        """Matched tracks take their regions (``crops``: the tracks' masks as predicted for this
        frame); returns the regions whose track this confirmed. A full view corrects the filter
        and replaces the mask and appearance; a view of an occluded object only keeps the track
        alive (its full mask and prediction stay)."""
        full = []
        pairs_rt = list(matches.items())
        rs, ts = [r for r, _ in pairs_rt], [t for _, t in pairs_rt]
        t_areas = np.array([crops[t].area for t in ts], np.float64)
        maybe_piece = (pairs.cover[rs, ts] >= PIECE_COVER) & (
            regions.areas[rs] < PARTIAL_AREA * t_areas
        )
        for (r, t), maybe in zip(pairs_rt, maybe_piece.tolist()):
            # the rest hidden by any other region, its own parts too (SAM showing it as parts)
            hidden = maybe and hidden_of(r, crops[t], regions, math.inf)
            if not (maybe and hidden >= PIECE_HIDDEN):
                full.append((r, t))
        if full:
            rows, cols = [r for r, _ in full], [t for _, t in full]
            self.states.put(cols, motion.correct(self.states.select(cols), regions.boxes[rows]))
            self.zooms[cols] = 1.0
            self.tokens[cols] = merged_rows(self.tokens[cols], regions.tokens[rows])
            embeddings = None
            if regions.embeddings is not None:
                olds = [self.tracks[t].embedding for t in cols]
                embeddings = merged_rows(olds, regions.embeddings[rows])
            for k, (r, t) in enumerate(full):
                track = self.tracks[t]
                track.crop = regions.crop(r)
                if embeddings is not None:
                    track.embedding = embeddings[k]
        fresh = []
        scores = regions.scores.tolist()
        for r, t in matches.items():
            track = self.tracks[t]
            track.hits += 1
            track.misses = 0
            track.score_sum += scores[r]
            was = track.confirmed
            track.confirmed = was or track.hits >= self._hits_needed(track, settings)
            if track.confirmed and not was:
                fresh.append(r)
        return fresh

    def _hits_needed(self, track: Track, settings: TrackerSettings) -> int:
        return hits_needed(track, settings.birth_hits, self._sure)

    def _births(
        self, out, regions: RegionCues, pairs: PairCues, matches, high, settings
    ) -> list[Track]:
        """A new track for each region no track took (kept if it scores >= ``low_score``)."""
        born = []
        for r in range(len(out)):
            if out[r] is not None:
                continue
            track = Track(
                self.ids.next(),
                regions.crop(r),
                None if regions.embeddings is None else regions.embeddings[r],
                score_sum=float(regions.scores[r]),
            )
            track.confirmed = self._hits_needed(track, settings) <= 1
            out[r] = track
            born.append(track)
            if track.confirmed:  # may be merged into a lost track (_merge_duplicates)
                state = motion.init_states(regions.boxes[r : r + 1])
                self._born[id(track)] = (state, regions.tokens[r])
        return born

    def _age_unmatched(self, matched: set[int], settings) -> None:
        kept, unmatched = [], []
        for t, track in enumerate(self.tracks):
            if t not in matched:
                unmatched.append(t)
                track.misses += 1
                track.gaps += 0 if track.confirmed else 1
                limit = settings.death_misses if track.confirmed else TENTATIVE_MISSES + 1
                if track.misses >= limit:
                    continue
            kept.append(t)
        self.states.v[unmatched, 2:] = 0.0  # a lost box keeps its size (ByteTrack)
        self._keep(kept)

    def _cap(self, out, n_regions: int) -> None:
        """At most :data:`MAX_TRACKS_PER_REGION` x the most regions of the last
        :data:`CAP_WINDOW` frames live (not this frame's alone: SAM returns an object whole in one
        frame and as parts in the next, and a per-frame cap dropped the lost whole's track);
        unseen tentative tracks go first, then the longest-lost confirmed ones."""
        self._recent_counts.append(n_regions)  # a deque of the last CAP_WINDOW frames
        n_regions = max(self._recent_counts)
        cap = max(MIN_TRACK_CAP, math.floor(MAX_TRACKS_PER_REGION * n_regions))
        if len(self.tracks) <= cap:
            return
        seen_now = {id(t) for t in out}
        spare = sorted((t for t in self.tracks if id(t) not in seen_now),
                       key=lambda t: (t.confirmed, -t.misses))  # fmt: skip
        drop = {id(t) for t in spare[: len(self.tracks) - cap]}
        self._keep([i for i, t in enumerate(self.tracks) if id(t) not in drop])

    def _merge_duplicates(self, out, fresh: list[int], settings) -> None:
        """A track confirmed this frame where a lost confirmed track should be hands its
        observation to the older track (which keeps its id); see the module docstring."""
        lost = [t for t in self.tracks if t.confirmed and t.misses > 0]
        for r in fresh:
            if not lost:
                return
            young = out[r]
            row = {id(t): i for i, t in enumerate(self.tracks)}
            young_row = row.get(id(young))
            if young_row is None:
                young_state, young_token = self._born[id(young)]
            else:
                young_state = self.states.select(slice(young_row, young_row + 1))
                young_token = self.tokens[young_row]
            cos = {id(t): float(np.dot(young_token, self.tokens[i]))
                   for i, t in enumerate(self.tracks) if t is not young}  # fmt: skip
            lost_rows = [row[id(t)] for t in lost]
            lost_states = self.states.select(lost_rows)
            zooms = self.zooms[lost_rows].tolist()
            at = lost_duplicate(young.crop, young_state, lost, lost_states, zooms, cos,
                                settings.similarity_gate)  # fmt: skip
            if at is None:
                continue
            old = lost[at]
            self.states.put([row[id(old)]], young_state)
            self.zooms[row[id(old)]] = 1.0
            old.crop = young.crop
            self.tokens[row[id(old)]] = merged(self.tokens[row[id(old)]], young_token)
            old.hits += young.hits
            old.misses = 0
            old.history.extend(young.history)
            out[r] = old
            lost.remove(old)
            if young_row is not None:
                self._keep([i for i in range(len(self.tracks)) if i != young_row])
