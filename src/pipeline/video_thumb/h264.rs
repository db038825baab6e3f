//! H.264 structures read before any decoder runs: the avcC record (ISO/IEC 14496-15), the
//! sequence parameter set (ITU-T H.264 §7.3.2.1.1) and the length-prefixed NAL units of a
//! sample, each bounds-checked.

pub(super) fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1): NAL length size and the
/// parameter sets.
pub(super) struct AvcConfig<'a> {
    pub(super) length_size: usize,
    pub(super) sps: Vec<&'a [u8]>,
    pub(super) pps: Vec<&'a [u8]>,
}

impl<'a> AvcConfig<'a> {
    pub(super) fn parse(b: &'a [u8]) -> Option<AvcConfig<'a>> {
        if *b.first()? != 1 {
            return None;
        }
        let length_size = usize::from(b.get(4)? & 3) + 1;
        if length_size == 3 {
            return None;
        }
        let mut at = 5;
        let n_sps = usize::from(b.get(at)? & 0x1F);
        at += 1;
        let sps = parameter_sets(b, n_sps, &mut at)?;
        let n_pps = usize::from(*b.get(at)?);
        at += 1;
        let pps = parameter_sets(b, n_pps, &mut at)?;
        Some(AvcConfig {
            length_size,
            sps,
            pps,
        })
    }
}

/// `count` parameter sets, each behind a 16-bit length, from `at` on.
fn parameter_sets<'a>(b: &'a [u8], count: usize, at: &mut usize) -> Option<Vec<&'a [u8]>> {
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes([*b.get(*at)?, *b.get(*at + 1)?]));
        let nal = b.get(*at + 2..*at + 2 + len)?;
        *at += 2 + len;
        if !nal.is_empty() {
            sets.push(nal);
        }
    }
    Some(sets)
}

/// The NAL units of a length-prefixed sample; `None` if a length overruns it.
pub(super) fn split_sample(sample: &[u8], length_size: usize) -> Option<Vec<&[u8]>> {
    let mut nals = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let len = sample
            .get(at..at + length_size)?
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        at += length_size;
        let nal = sample.get(at..at.checked_add(len)?)?;
        at += len;
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    Some(nals)
}

/// What the sequence parameter set says about the picture (ITU-T H.264 §7.3.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sps {
    pub(super) chroma_format: u32,
    pub(super) bit_depth_luma: u32,
    pub(super) bit_depth_chroma: u32,
    pub(super) frame_mbs_only: bool,
    /// Whole macroblocks, before cropping: what the decoder allocates for.
    pub(super) coded_width: u64,
    pub(super) coded_height: u64,
    /// After the cropping window: what is shown.
    pub(super) width: u64,
    pub(super) height: u64,
}

impl Sps {
    pub(super) fn parse(nal: &[u8]) -> Option<Sps> {
        if nal_type(nal) != 7 {
            return None;
        }
        let rbsp = unescape(nal.get(1..)?);
        let mut r = Bits { b: &rbsp, pos: 0 };
        let profile_idc = r.u(8)? as u8;
        r.u(16)?; // constraint flags, level
        r.ue()?; // seq_parameter_set_id
        let (mut chroma_format, mut separate_planes) = (1, false);
        let (mut bit_depth_luma, mut bit_depth_chroma) = (8, 8);
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format = r.ue()?;
            if chroma_format > 3 {
                return None;
            }
            if chroma_format == 3 {
                separate_planes = r.u(1)? == 1;
            }
            bit_depth_luma = r.ue()?.checked_add(8)?;
            bit_depth_chroma = r.ue()?.checked_add(8)?;
            r.u(1)?; // qpprime_y_zero_transform_bypass
            if r.u(1)? == 1 {
                let lists = if chroma_format == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.u(1)? == 1 {
                        r.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.ue()?; // log2_max_frame_num_minus4
        match r.ue()? {
            0 => {
                r.ue()?;
            }
            1 => {
                r.u(1)?;
                r.se()?;
                r.se()?;
                let cycle = r.ue()?;
                if cycle > 255 {
                    return None;
                }
                for _ in 0..cycle {
                    r.se()?;
                }
            }
            2 => {}
            _ => return None,
        }
        r.ue()?; // max_num_ref_frames
        r.u(1)?; // gaps_in_frame_num_value_allowed
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.u(1)? == 1;
        if !frame_mbs_only {
            r.u(1)?; // mb_adaptive_frame_field
        }
        r.u(1)?; // direct_8x8_inference
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let coded_width = width_mbs * 16;
        let coded_height = height_map_units * 16 * field_factor;
        let (mut width, mut height) = (coded_width, coded_height);
        if r.u(1)? == 1 {
            let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
            let chroma_array = if separate_planes { 0 } else { chroma_format };
            let (unit_x, unit_y) = match chroma_array {
                0 => (1, field_factor),
                1 => (2, 2 * field_factor),
                2 => (2, field_factor),
                _ => (1, field_factor),
            };
            width = width.checked_sub(unit_x * (u64::from(l) + u64::from(rt)))?;
            height = height.checked_sub(unit_y * (u64::from(t) + u64::from(b)))?;
        }
        Some(Sps {
            chroma_format,
            bit_depth_luma,
            bit_depth_chroma,
            frame_mbs_only,
            coded_width,
            coded_height,
            width,
            height,
        })
    }
}

/// RBSP from a NAL payload: every `00 00 03` loses its emulation-prevention byte.
pub(super) fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut zeros = 0;
    for &byte in b {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// A big-endian bit reader with Exp-Golomb codes; every read is bounds-checked.
pub(super) struct Bits<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.b.get(self.pos / 8)?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(v))
    }

    fn u(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |v, _| Some((v << 1) | self.bit()?))
    }

    /// ue(v): at most 31 leading zeros (a 32-bit value), more is not H.264.
    pub(super) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.u(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).ok()
    }

    pub(super) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }

    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i32, 8i32);
        for _ in 0..size {
            if next != 0 {
                let delta = self.se()?;
                if !(-128..=127).contains(&delta) {
                    return None;
                }
                next = (last + delta + 256).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}
