//! Decompression on a thread of its own: a layer's decoder runs ahead of the tar extraction,
//! which spends its time in file-creating syscalls, so an unpack keeps two cores busy.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

const CHUNK: usize = 256 * 1024;
/// Chunks decoded ahead of the reader (and so the memory one unpack holds).
const AHEAD: usize = 8;

/// A reader fed by `inner` on another thread. The thread ends at the end of `inner`, at its
/// first error (handed to the reader), or when the reader is dropped.
pub struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    /// Emptied buffers go back to the thread, so a layer reuses a few allocations.
    spent: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    pub fn new(inner: Box<dyn Read + Send>) -> io::Result<ReadAhead> {
        let (chunk_tx, chunks) = mpsc::sync_channel(AHEAD);
        let (spent, spent_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("berth-decompress".to_string())
            .spawn(move || produce(inner, &chunk_tx, &spent_rx))?;
        Ok(ReadAhead {
            chunks,
            spent,
            current: Vec::new(),
            pos: 0,
            done: false,
        })
    }
}

fn produce(
    mut inner: Box<dyn Read + Send>,
    chunks: &SyncSender<io::Result<Vec<u8>>>,
    spent: &Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = spent.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        let result = loop {
            match inner.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        let end = filled < CHUNK;
        if filled > 0 && chunks.send(Ok(buf)).is_err() {
            return;
        }
        if let Err(e) = result {
            let _ = chunks.send(Err(e));
            return;
        }
        if end {
            return;
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(next)) => {
                    let old = std::mem::replace(&mut self.current, next);
                    self.pos = 0;
                    let _ = self.spent.send(old);
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The thread is gone: the end of the stream.
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` in pieces of `step` bytes, then fails.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate stream",
                    ))
                } else {
                    Ok(0)
                };
            }
            let n = out.len().min(self.step).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn passes_every_byte_in_order() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12_345] {
            let src = data(len);
            let inner = Trickle {
                data: src.clone(),
                pos: 0,
                step: 10_007,
                fail_at_end: false,
            };
            let mut out = Vec::new();
            ReadAhead::new(Box::new(inner))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out.len(), len);
            assert!(out == src, "bytes differ for length {len}");
        }
    }

    #[test]
    fn hands_the_decoder_error_to_the_reader_after_the_good_bytes() {
        let src = data(3 * CHUNK + 5);
        let inner = Trickle {
            data: src.clone(),
            pos: 0,
            step: 65_536,
            fail_at_end: true,
        };
        let mut reader = ReadAhead::new(Box::new(inner)).unwrap();
        let mut out = vec![0u8; src.len()];
        reader.read_exact(&mut out).unwrap();
        assert!(out == src);
        let err = reader.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "corrupt deflate stream");
    }

    #[test]
    fn dropping_the_reader_ends_the_thread() {
        // An endless source: only the dropped receiver can stop the thread.
        struct Endless;
        impl Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                out.fill(1);
                Ok(out.len())
            }
        }
        let mut reader = ReadAhead::new(Box::new(Endless)).unwrap();
        let mut some = [0u8; 1000];
        reader.read_exact(&mut some).unwrap();
        assert_eq!(some, [1u8; 1000]);
        drop(reader);
    }
}
