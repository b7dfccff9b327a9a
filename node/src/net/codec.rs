//! The prost request-response codec of [`FLOE_PROTOCOL`](super::FLOE_PROTOCOL): varint-prefixed frames, each
//! length checked against [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN) before anything is allocated.
//!
//! It owns the bytes on a stream and nothing else: no decisions, no state.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use prost::Message;

use floe_protocol::wire::{self, pb};

use super::MAX_MESSAGE_LEN;

/// Reads one varint-prefixed frame, refusing a length over `limit` before allocating.
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(10);
    let len = loop {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        prefix.push(byte[0]);
        match wire::frame_len(&prefix, limit) {
            Ok(Some((len, _))) => break len,
            Ok(None) => continue,
            Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        }
    };
    // Grow the buffer as bytes arrive: a peer that announces a large frame and sends nothing costs nothing.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let wanted = u64::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too long"))?;
    io.take(wanted).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "frame shorter than announced",
        ));
    }
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send, M: Message>(
    io: &mut T,
    message: &M,
) -> io::Result<()> {
    io.write_all(&wire::encode_frame(message)).await?;
    io.close().await
}

fn decode<M: Message + Default>(body: &[u8], name: &'static str) -> io::Result<M> {
    wire::decode_body(body, MAX_MESSAGE_LEN, name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Length-prefixed prost messages, with limits checked before allocation.
#[derive(Debug, Clone, Default)]
pub struct FloeCodec;

impl request_response::Codec for FloeCodec {
    type Protocol = StreamProtocol;
    type Request = pb::Request;
    type Response = pb::Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<pb::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io, MAX_MESSAGE_LEN).await?, "Request")
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<pb::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io, MAX_MESSAGE_LEN).await?, "Response")
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: pb::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: pb::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}
