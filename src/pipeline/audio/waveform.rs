//! The voice-note waveform: a streaming 64-bucket RMS accumulator, O(64) state whatever the
//! length of the audio.

/// Number of values in a voice-note waveform (WhatsApp's).
pub(super) const WAVEFORM_LEN: usize = 64;

/// Bucket RMS below this (−80 dBFS) counts as silence: a silent recording gives all zeros
/// instead of its noise floor blown up to 100.
const SILENCE_RMS: f64 = 1e-4;

/// Streaming 64-bucket RMS accumulator: O(64) state whatever the length. Also used, with no
/// buckets, to count frames.
pub(super) struct Accumulator {
    /// Frames the buckets span (0 when only counting).
    total: u64,
    /// Leading frames still to drop (Opus pre-skip).
    skip: u64,
    /// Frames accumulated so far (after the skip).
    pub(super) pos: u64,
    bucket: usize,
    /// First frame of the next bucket.
    next_edge: u64,
    sum_sq: [f64; WAVEFORM_LEN],
    pub(super) count: [u64; WAVEFORM_LEN],
}

impl Accumulator {
    pub(super) fn new(total: u64, skip: u64) -> Self {
        let mut a = Accumulator {
            total,
            skip,
            pos: 0,
            bucket: 0,
            next_edge: 0,
            sum_sq: [0.0; WAVEFORM_LEN],
            count: [0; WAVEFORM_LEN],
        };
        a.next_edge = a.edge(1);
        a
    }

    pub(super) fn counter() -> Self {
        Self::new(0, 0)
    }

    /// First frame of bucket `b`: buckets are equal time slices of `total`.
    fn edge(&self, b: usize) -> u64 {
        let e = u128::from(self.total) * b as u128 / WAVEFORM_LEN as u128;
        u64::try_from(e).unwrap_or(u64::MAX)
    }

    /// Add interleaved samples of `channels` channels, mixed to mono.
    pub(super) fn push(&mut self, interleaved: &[f32], channels: usize) {
        let channels = channels.max(1);
        let mut frames = interleaved.chunks_exact(channels);
        let dropped = usize::try_from(self.skip).unwrap_or(usize::MAX);
        let dropped = dropped.min(frames.len());
        self.skip -= dropped as u64;
        if dropped > 0 {
            frames.nth(dropped - 1);
        }
        if self.total == 0 {
            self.pos += frames.len() as u64;
            return;
        }
        let scale = 1.0 / channels as f64;
        for frame in frames {
            while self.bucket + 1 < WAVEFORM_LEN && self.pos >= self.next_edge {
                self.bucket += 1;
                self.next_edge = self.edge(self.bucket + 1);
            }
            let mono = frame.iter().map(|&s| f64::from(s)).sum::<f64>() * scale;
            // A decoder emitting NaN or infinities must not poison the whole waveform.
            let mono = if mono.is_finite() { mono } else { 0.0 };
            self.sum_sq[self.bucket] += mono * mono;
            self.count[self.bucket] += 1;
            self.pos += 1;
        }
    }

    /// Account for `frames` of audio that could not be decoded, as silence, so the buckets
    /// stay aligned with time.
    pub(super) fn push_silence(&mut self, frames: u64) {
        let dropped = self.skip.min(frames);
        self.skip -= dropped;
        let mut left = frames - dropped;
        // `frames` comes from the container and may be absurd: saturate, and the caller's
        // duration cap ends the decode.
        if self.total == 0 {
            self.pos = self.pos.saturating_add(left);
            return;
        }
        while left > 0 {
            while self.bucket + 1 < WAVEFORM_LEN && self.pos >= self.next_edge {
                self.bucket += 1;
                self.next_edge = self.edge(self.bucket + 1);
            }
            let room = if self.bucket + 1 < WAVEFORM_LEN {
                self.next_edge - self.pos
            } else {
                left
            };
            let n = room.min(left).max(1);
            self.count[self.bucket] = self.count[self.bucket].saturating_add(n);
            self.pos = self.pos.saturating_add(n);
            left -= n;
        }
    }

    /// Bucket RMS normalised to the loudest bucket, 0–100.
    pub(super) fn waveform(&self) -> Vec<u8> {
        let rms: Vec<f64> = self
            .sum_sq
            .iter()
            .zip(self.count.iter())
            .map(|(&s, &n)| if n == 0 { 0.0 } else { (s / n as f64).sqrt() })
            .collect();
        let loudest = rms.iter().copied().fold(0.0f64, f64::max);
        if loudest <= SILENCE_RMS {
            return vec![0; WAVEFORM_LEN];
        }
        rms.iter()
            .map(|r| (r / loudest * 100.0).round().clamp(0.0, 100.0) as u8)
            .collect()
    }
}
