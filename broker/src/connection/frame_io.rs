//! Writing responses: a frame's byte segments with vectored writes, file regions with
//! `sendfile` on plain TCP ([`Transport`]).

#[allow(unused_imports)]
use super::*;

/// A response to write: its frame, and the file regions its external segments stand for.
pub(super) struct Outgoing {
    pub(super) frame: ResponseFrame,
    pub(super) regions: Vec<log_store::FileRegion>,
}

impl From<ResponseFrame> for Outgoing {
    fn from(frame: ResponseFrame) -> Outgoing {
        Outgoing {
            frame,
            regions: Vec::new(),
        }
    }
}

impl From<BytesMut> for Outgoing {
    fn from(b: BytesMut) -> Outgoing {
        ResponseFrame::from(b).into()
    }
}

/// A connection's byte stream: plain TCP, or TLS over it. Plain TCP lets a Fetch response's
/// record sets go from the segment file to the socket with `sendfile`.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket when nothing (TLS) sits between it and the response bytes.
    fn plain_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Transport for TcpStream {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

pub(super) fn externals(regions: &[log_store::FileRegion]) -> Vec<External> {
    regions
        .iter()
        .enumerate()
        .map(|(id, r)| External {
            id,
            len: r.len() as usize,
        })
        .collect()
}

/// Writes a response's segments in order: runs of bytes with one vectored write each (a
/// plain TCP socket takes them in one system call), file regions with `sendfile`.
pub(super) async fn write_frame<S: Transport>(
    stream: &mut S,
    out: &Outgoing,
) -> std::io::Result<()> {
    let segments = out.frame.segments();
    let mut at = 0;
    while at < segments.len() {
        let end = segments[at..]
            .iter()
            .position(|s| matches!(s, Segment::External { .. }))
            .map_or(segments.len(), |p| at + p);
        write_bytes(stream, &segments[at..end]).await?;
        if let Some(Segment::External { id, len }) = segments.get(end) {
            let region = out.regions.get(*id).ok_or_else(|| {
                std::io::Error::other(format!("no file region {id} for the response"))
            })?;
            send_region(stream, region, *len).await?;
        }
        at = end + 1;
    }
    Ok(())
}

pub(super) async fn write_bytes<S: Transport>(
    stream: &mut S,
    segments: &[Segment],
) -> std::io::Result<()> {
    let bytes: Vec<&[u8]> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Bytes(b) if !b.is_empty() => Some(&b[..]),
            _ => None,
        })
        .collect();
    if bytes.len() <= 1 || !stream.is_write_vectored() {
        for b in bytes {
            stream.write_all(b).await?;
        }
        return Ok(());
    }
    let mut slices: Vec<std::io::IoSlice<'_>> =
        bytes.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Sends `len` bytes of `region` from the segment file: `sendfile` on plain TCP (the bytes
/// never enter user space), else read and written (not reached: only plain TCP connections
/// get regions). A file shorter than the region fails the write, and the connection closes:
/// the frame's size was already promised.
pub(super) async fn send_region<S: Transport>(
    stream: &mut S,
    region: &log_store::FileRegion,
    len: usize,
) -> std::io::Result<()> {
    let (Some(tcp), Some(file)) = (stream.plain_tcp(), region.fd()) else {
        let bytes = region.to_vec().map_err(std::io::Error::other)?;
        return stream.write_all(&bytes).await;
    };
    let mut offset = i64::try_from(region.position()).map_err(std::io::Error::other)?;
    let end = offset + len as i64;
    while offset < end {
        tcp.writable().await?;
        let sent = tcp.try_io(tokio::io::Interest::WRITABLE, || {
            let count = usize::try_from(end - offset).unwrap_or(usize::MAX);
            nix::sys::sendfile::sendfile(tcp, file, Some(&mut offset), count)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
