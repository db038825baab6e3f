//! Opus for symphonia: a decoder adapter over the pure-Rust `opus-rs` crate.
//!
//! Symphonia demuxes Ogg Opus but cannot decode it. The adapter feeds each packet to `opus-rs`
//! (a Rust port of libopus: no C, so the build needs no `cmake`) and hands symphonia an audio
//! buffer. `opus-rs` uses `unsafe` internally; like every decoder here it runs only inside the
//! caged worker. The forbid-unsafe `opus-decoder` crate was measured too and decoded CELT at
//! about real time (65× slower), too slow for voice notes of several minutes.
//!
//! Pre-skip is *not* applied here: the caller's accumulator drops it, because trimming only
//! the first packet loses part of a pre-skip that spans more than one packet.

use symphonia::core::audio::{
    AsGenericAudioBufferRef, AudioBuffer, AudioMut, AudioSpec, Channels, GenericAudioBufferRef,
    layouts,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{
    AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult,
};
use symphonia::core::codecs::registry::{RegisterableAudioDecoder, SupportedAudioCodec};
use symphonia::core::errors::{Error, Result, decode_error, unsupported_error};
use symphonia::core::packet::PacketRef;

/// Opus always decodes at 48 kHz here: it is the codec's internal rate, and the granule
/// positions the duration comes from count 48 kHz samples whatever the input rate was.
const RATE: u32 = 48_000;
/// The longest packet: 120 ms at 48 kHz (RFC 6716 §3.2.5).
const MAX_FRAMES: usize = 5_760;

static SUPPORTED: [SupportedAudioCodec; 1] = [SupportedAudioCodec {
    id: CODEC_ID_OPUS,
    info: CodecInfo {
        short_name: "opus",
        long_name: "Opus (pure Rust, opus-rs)",
        profiles: &[],
    },
}];

/// A symphonia `AudioDecoder` for mono and stereo Opus streams (RFC 7845 mapping family 0).
pub(crate) struct OpusDecoder {
    params: AudioCodecParameters,
    decoder: opus_rs::OpusDecoder,
    channels: usize,
    /// Interleaved output of the last packet, kept between packets so decoding allocates
    /// nothing.
    pcm: Vec<f32>,
    buf: AudioBuffer<f32>,
}

fn layout(channels: usize) -> Option<Channels> {
    match channels {
        1 => Some(layouts::CHANNEL_LAYOUT_MONO),
        2 => Some(layouts::CHANNEL_LAYOUT_STEREO),
        _ => None,
    }
}

impl OpusDecoder {
    fn try_new(params: &AudioCodecParameters) -> Result<Self> {
        let channels = params.channels.as_ref().map_or(0, |c| c.count());
        let Some(spec_channels) = layout(channels) else {
            return unsupported_error("opus: only mono and stereo streams are decoded");
        };
        let decoder = new_decoder(channels)?;
        Ok(Self {
            params: params.clone(),
            decoder,
            channels,
            pcm: vec![0.0; MAX_FRAMES * channels],
            buf: AudioBuffer::new(AudioSpec::new(RATE, spec_channels), MAX_FRAMES),
        })
    }
}

fn new_decoder(channels: usize) -> Result<opus_rs::OpusDecoder> {
    opus_rs::OpusDecoder::new(RATE as i32, channels)
        .map_err(|_| Error::Unsupported("opus: decoder rejected the stream parameters"))
}

impl AudioDecoder for OpusDecoder {
    fn reset(&mut self) {
        // opus-rs has no reset: a fresh decoder is the same state.
        if let Ok(d) = new_decoder(self.channels) {
            self.decoder = d;
        }
    }

    fn codec_info(&self) -> &CodecInfo {
        &SUPPORTED[0].info
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        &self.params
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> Result<GenericAudioBufferRef<'_>> {
        // An empty packet would ask for loss concealment: hostile input must not get the
        // decoder to invent audio, so it decodes to nothing instead.
        let frames = if packet.data.is_empty() {
            0
        } else {
            match self.decoder.decode(packet.data, MAX_FRAMES, &mut self.pcm) {
                Ok(n) if n <= MAX_FRAMES => n,
                Ok(_) => return decode_error("opus: packet longer than 120 ms"),
                Err(_) => return decode_error("opus: invalid packet"),
            }
        };
        let samples = frames * self.channels;
        self.buf.clear();
        self.buf.render_uninit(Some(frames));
        self.buf.copy_from_slice_interleaved(&&self.pcm[..samples]);
        self.buf.trim(
            packet.trim_start.get() as usize,
            packet.trim_end.get() as usize,
        );
        Ok(self.buf.as_generic_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.buf.as_generic_audio_buffer_ref()
    }
}

impl RegisterableAudioDecoder for OpusDecoder {
    fn try_registry_new(
        params: &AudioCodecParameters,
        _opts: &AudioDecoderOptions,
    ) -> Result<Box<dyn AudioDecoder>> {
        Ok(Box::new(OpusDecoder::try_new(params)?))
    }

    fn supported_codecs() -> &'static [SupportedAudioCodec] {
        &SUPPORTED
    }
}

#[cfg(test)]
mod tests;
