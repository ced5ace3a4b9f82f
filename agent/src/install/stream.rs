//! An HTTP download as a plain `Read` that survives dropped connections: after a failure it
//! asks again from where it stopped (`Range: bytes=N-`) and goes on only if the server
//! answers `206` from exactly that byte, for the same file (same length and validator).

use std::io::{self, Read};
use std::time::Duration;

use super::download_error;

/// How often a dropped download is resumed before the install fails.
pub const RESUMES: u32 = 5;
/// Progress after a resume that forgives the earlier failures.
const PROGRESS_RESETS: u64 = 8 << 20;

pub struct Resuming {
    agent: ureq::Agent,
    url: String,
    offset: u64,
    /// The file's length, from the first answer (Content-Length or Content-Range).
    length: Option<u64>,
    /// ETag or Last-Modified of the first answer: a resume must be of the same file.
    validator: Option<String>,
    body: Option<Box<dyn Read + Send>>,
    /// Resumes since the last good progress (these count towards giving up).
    failed_resumes: u32,
    /// Resumes in all, for the report.
    resumes: u32,
    /// Where the last resume started.
    resumed_at: u64,
    /// Why the connection last broke.
    failure: String,
    /// The whole file was read.
    done: bool,
    pause: Duration,
    /// Called with a line for the log at each resume.
    on_resume: Box<dyn FnMut(String) + Send>,
}

impl Resuming {
    /// Opens `url`; fails unless the server answers 200.
    pub fn open(
        agent: ureq::Agent,
        url: &str,
        on_resume: Box<dyn FnMut(String) + Send>,
    ) -> io::Result<Resuming> {
        let mut r = Resuming {
            agent,
            url: url.to_string(),
            offset: 0,
            length: None,
            validator: None,
            body: None,
            failed_resumes: 0,
            resumes: 0,
            resumed_at: 0,
            failure: String::new(),
            done: false,
            pause: Duration::from_secs(1),
            on_resume,
        };
        r.request()?;
        Ok(r)
    }

    /// Pause between resumes (tests shorten it).
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The file's length as the server announced it.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// How many times the download was resumed, in all.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    fn request(&mut self) -> io::Result<()> {
        let mut req = self.agent.get(&self.url);
        if self.offset > 0 {
            req = req.header("Range", format!("bytes={}-", self.offset));
            if let Some(v) = &self.validator {
                req = req.header("If-Range", v);
            }
        }
        let resp = req
            .call()
            .map_err(|e| download_error(format!("{}: {e}", self.url)))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if self.offset == 0 {
            if status != 200 {
                return Err(download_error(format!("{}: HTTP {status}", self.url)));
            }
            self.length = header("content-length").and_then(|l| l.parse().ok());
            self.validator = header("etag").or_else(|| header("last-modified"));
        } else {
            // bytes START-END/LENGTH, starting exactly where the last answer stopped.
            let range = header("content-range").unwrap_or_default();
            let expected = format!("bytes {}-", self.offset);
            let length_ok = match (self.length, range.rsplit('/').next()) {
                (Some(l), Some(t)) => t.parse::<u64>().ok() == Some(l),
                _ => true,
            };
            if status != 206 || !range.starts_with(&expected) || !length_ok {
                return Err(download_error(format!(
                    "{}: cannot resume at byte {} (HTTP {status}, Content-Range {range:?})",
                    self.url, self.offset
                )));
            }
        }
        self.body = Some(Box::new(resp.into_body().into_reader()));
        Ok(())
    }
}

impl Read for Resuming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done {
                return Ok(0);
            }
            let Some(body) = self.body.as_mut() else {
                // The connection broke: ask again from where it stopped.
                if self.failed_resumes >= RESUMES {
                    return Err(download_error(format!(
                        "{}: {}; gave up after {RESUMES} resumes",
                        self.url, self.failure
                    )));
                }
                self.failed_resumes += 1;
                self.resumes += 1;
                (self.on_resume)(format!(
                    "download of {} interrupted ({}); resuming at byte {} ({}/{RESUMES})",
                    self.url, self.failure, self.offset, self.failed_resumes
                ));
                std::thread::sleep(self.pause * self.failed_resumes);
                self.resumed_at = self.offset;
                if let Err(e) = self.request() {
                    self.failure = e.to_string();
                }
                continue;
            };
            match body.read(buf) {
                Ok(0) if self.length.is_some_and(|l| self.offset < l) => {
                    self.failure = format!("connection closed at byte {}", self.offset);
                }
                Ok(0) => {
                    self.done = true;
                    self.body = None;
                    return Ok(0);
                }
                Ok(n) => {
                    self.offset += n as u64;
                    // Only failures without progress in between count towards giving up:
                    // a long download over a poor link may be resumed many times.
                    if self.offset >= self.resumed_at + PROGRESS_RESETS {
                        self.failed_resumes = 0;
                    }
                    return Ok(n);
                }
                Err(e) => self.failure = e.to_string(),
            }
            self.body = None;
        }
    }
}
