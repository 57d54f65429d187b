//! Named primitives (primitive 117), dispatched by module and name: the
//! console plugin, the file plugin, MiscPrimitivePlugin's string primitives
//! ([`crate::misc_plugin`]) and the LargeIntegers plugin
//! ([`crate::large_ints`]). A named primitive of any other module fails (the
//! image's fallback runs) and is noted, so that a run that then stops can
//! say what was missing.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use spur_runtime::special_objects::index as so;

use crate::interp::{Prim, Vm, R};
use crate::mem::Oop;

const FAIL: R<Prim> = Ok(Prim::Fail(1));
/// Marks this process's file handles (the first word of a handle).
const HANDLE_MAGIC: u32 = 0x5350_4649;

/// An open file, or one of the standard streams.
#[derive(Debug)]
pub(crate) enum Handle {
    Stdin,
    Stdout,
    Stderr,
    File { file: File, writable: bool },
}

/// The files the image opened.
#[derive(Debug, Default)]
pub(crate) struct Files {
    open: Vec<Option<Handle>>,
    stdio: Option<[usize; 3]>,
}

impl Vm<'_> {
    /// Primitive 117: the method's first literal names the module and the
    /// primitive (`#(module name flags index)`).
    pub(crate) fn named_primitive(&mut self, method: Oop, argc: u32) -> R<Prim> {
        let spec = self.m.fetch(method, 1)?;
        let module = self
            .m
            .fetch(spec, 0)
            .ok()
            .and_then(|m| self.m.string(m))
            .unwrap_or_default();
        let Some(name) = self.m.fetch(spec, 1).ok().and_then(|m| self.m.string(m)) else {
            return FAIL;
        };
        self.current_named = Some(format!("{module}>>{name}"));
        match (module.as_str(), name.as_str()) {
            ("ConsolePlugin", "primitiveLog:level:") => self.console_log(argc),
            ("FilePlugin", _) => {
                let r = self.file_primitive(&name, argc)?;
                if matches!(r, Prim::Fail(_)) && !KNOWN_FILE_PRIMITIVES.contains(&name.as_str()) {
                    self.note_missing(format!("FilePlugin>>{name}"));
                }
                Ok(r)
            }
            ("", _) => FAIL,
            // Modules whose primitives all have Smalltalk fallbacks: those
            // not implemented fail without a note.
            ("MiscPrimitivePlugin", _) => self.misc_primitive(&name, argc),
            ("LargeIntegers", _) => self.large_integers_primitive(&name, argc),
            ("SecurityPlugin" | "LocalePlugin", _) => FAIL,
            _ => {
                self.note_missing(format!("{module}>>{name}"));
                FAIL
            }
        }
    }

    fn console_log(&mut self, argc: u32) -> R<Prim> {
        if argc != 2 {
            return FAIL;
        }
        let msg = self.stack_value(1)?;
        let Some(text) = self.bytes_of(msg) else {
            return FAIL;
        };
        let mut line = text;
        line.push(b'\n');
        self.write_output(&line);
        self.pop_n(2)?;
        Ok(Prim::Done)
    }

    /// `stringHash: aString initialHash: speciesHash` of a byte string: the
    /// same arithmetic as the image's own fallback code (hot in Pharo: every
    /// Symbol and String hash).
    pub(crate) fn string_hash(&mut self, argc: u32) -> R<Prim> {
        if argc != 2 {
            return FAIL;
        }
        let (s, seed) = (self.stack_value(1)?, self.stack_value(0)?);
        let Some(seed) = self.m.small_int(seed) else {
            return FAIL;
        };
        let Some(bytes) = self.bytes_of(s) else {
            return FAIL;
        };
        let mut hash = seed & 0x0FFF_FFFF;
        for b in bytes {
            hash += i64::from(b);
            let low = hash & 16383;
            hash = (0x260D * low + ((0x260D * (hash >> 14) + 0x0065 * low) & 16383) * 16384)
                & 0x0FFF_FFFF;
        }
        let v = self.int(hash);
        self.pop_n_push(3, v)?;
        Ok(Prim::Done)
    }

    fn bytes_of(&self, o: Oop) -> Option<Vec<u8>> {
        let f = self.m.format(o).ok()?;
        (16..24)
            .contains(&f)
            .then(|| self.m.bytes(o).ok().map(|b| b.to_vec()))?
    }

    // ---- FilePlugin ----

    /// A handle object for `h`, kept open; `None` when the handle's index
    /// does not fit its 32 bits.
    fn new_handle(&mut self, h: Handle) -> R<Option<Oop>> {
        let i = match self.files.open.iter().position(Option::is_none) {
            Some(i) => {
                self.files.open[i] = Some(h);
                i
            }
            None => {
                self.files.open.push(Some(h));
                self.files.open.len() - 1
            }
        };
        self.handle_object(i)
    }

    /// The handle object of open file `i`; `None` when `i` does not fit
    /// the handle's 32 bits.
    fn handle_object(&mut self, i: usize) -> R<Option<Oop>> {
        let Ok(i) = u32::try_from(i) else {
            return Ok(None);
        };
        let ba = self.m.special(so::CLASS_BYTE_ARRAY);
        let ci = self.class_index(ba)?;
        let o = self.m.allocate_bytes(ci, 8)?;
        let b = self.m.bytes_mut(o)?;
        b[..4].copy_from_slice(&HANDLE_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&i.to_le_bytes());
        Ok(Some(o))
    }

    fn handle_index(&self, o: Oop) -> Option<usize> {
        let b = self.m.bytes(o).ok()?;
        if b.len() != 8 || b[..4] != HANDLE_MAGIC.to_le_bytes() {
            return None;
        }
        let i = u32::from_le_bytes(b[4..8].try_into().ok()?) as usize;
        self.files.open.get(i)?.as_ref().map(|_| i)
    }

    fn file_primitive(&mut self, name: &str, argc: u32) -> R<Prim> {
        let n = argc as u64;
        match name {
            "primitiveFileStdioHandles" => {
                let ids = match self.files.stdio {
                    Some(ids) => ids,
                    None => {
                        let mut ids = [0usize; 3];
                        for (k, h) in [Handle::Stdin, Handle::Stdout, Handle::Stderr]
                            .into_iter()
                            .enumerate()
                        {
                            self.files.open.push(Some(h));
                            ids[k] = self.files.open.len() - 1;
                        }
                        self.files.stdio = Some(ids);
                        ids
                    }
                };
                let a = self.new_array(3)?;
                for (k, id) in ids.into_iter().enumerate() {
                    let Some(h) = self.handle_object(id)? else {
                        return FAIL;
                    };
                    self.m.store(a, k as u64, h)?;
                }
                self.pop_n_push(n + 1, a)?;
                Ok(Prim::Done)
            }
            "primitiveFileDescriptorType" => {
                let Some(fd) = self.m.small_int(self.stack_value(0)?) else {
                    return FAIL;
                };
                // 1: a console or pipe, 2: a file (what the image asks of stdio).
                let t = if (0..=2).contains(&fd) { 1 } else { 2 };
                let v = self.int(t);
                self.pop_n_push(n + 1, v)?;
                Ok(Prim::Done)
            }
            "primitiveFileOpen" => {
                if argc != 2 || !self.opts.allow_files {
                    return FAIL;
                }
                let (name, w) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(path) = self.bytes_of(name) else {
                    return FAIL;
                };
                let path = String::from_utf8_lossy(&path).into_owned();
                let writable = w == self.tru;
                let f = if writable {
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                } else {
                    File::open(&path)
                };
                match f {
                    Ok(file) => {
                        let Some(h) = self.new_handle(Handle::File { file, writable })? else {
                            return FAIL;
                        };
                        self.pop_n_push(3, h)?;
                        Ok(Prim::Done)
                    }
                    Err(_) => FAIL,
                }
            }
            "primitiveFileClose" => {
                let Some(i) = self.handle_index(self.stack_value(0)?) else {
                    return FAIL;
                };
                if matches!(self.files.open[i], Some(Handle::File { .. })) {
                    self.files.open[i] = None;
                }
                self.pop_n(1)?;
                Ok(Prim::Done)
            }
            "primitiveFileSize" | "primitiveFileGetPosition" | "primitiveFileAtEnd" => {
                let Some(i) = self.handle_index(self.stack_value(0)?) else {
                    return FAIL;
                };
                let r = match self.files.open[i].as_mut() {
                    Some(Handle::File { file, .. }) => {
                        let pos = file.stream_position().ok();
                        let len = file.metadata().ok().map(|m| m.len());
                        match (name, pos, len) {
                            ("primitiveFileSize", _, Some(l)) => Some(Ok(l)),
                            ("primitiveFileGetPosition", Some(p), _) => Some(Ok(p)),
                            ("primitiveFileAtEnd", Some(p), Some(l)) => Some(Err(p >= l)),
                            _ => None,
                        }
                    }
                    Some(_) => match name {
                        "primitiveFileAtEnd" => Some(Err(false)),
                        _ => Some(Ok(0)),
                    },
                    None => None,
                };
                let v = match r {
                    Some(Ok(v)) => self.positive_int(v)?,
                    Some(Err(b)) => self.boolean(b),
                    None => return FAIL,
                };
                self.pop_n_push(2, v)?;
                Ok(Prim::Done)
            }
            "primitiveFileSetPosition" => {
                let (h, p) = (self.stack_value(1)?, self.stack_value(0)?);
                let (Some(i), Some(Ok(p))) =
                    (self.handle_index(h), self.int_value(p).map(u64::try_from))
                else {
                    return FAIL;
                };
                match self.files.open[i].as_mut() {
                    Some(Handle::File { file, .. }) => {
                        if file.seek(SeekFrom::Start(p)).is_err() {
                            return FAIL;
                        }
                    }
                    _ => return FAIL,
                }
                self.pop_n(2)?;
                Ok(Prim::Done)
            }
            "primitiveFileWrite" | "primitiveFileRead" => {
                if argc != 4 {
                    return FAIL;
                }
                let (h, buf, start, count) = (
                    self.stack_value(3)?,
                    self.stack_value(2)?,
                    self.stack_value(1)?,
                    self.stack_value(0)?,
                );
                // 1-based start and a count, in elements of the buffer.
                let (Some(i), Some(Ok(start)), Some(Ok(count))) = (
                    self.handle_index(h),
                    self.m.small_int(start).map(usize::try_from),
                    self.m.small_int(count).map(usize::try_from),
                ) else {
                    return FAIL;
                };
                let f = self.m.format(buf).unwrap_or(0);
                let unit: usize = match f {
                    9 => 8,
                    10 | 11 => 4,
                    12..=15 => 2,
                    16..=23 => 1,
                    _ => return FAIL,
                };
                // The format's low bits count the last slot's unused units (§3.2).
                let unused = match f {
                    10 | 11 => usize::from(f & 1),
                    12..=15 => usize::from(f & 3),
                    _ => 0,
                };
                let units = (self.m.bytes(buf)?.len() / unit).saturating_sub(unused);
                if start < 1 || start - 1 > units || count > units - (start - 1) {
                    return FAIL;
                }
                let (a, b) = ((start - 1) * unit, (start - 1 + count) * unit);
                let done = if name == "primitiveFileWrite" {
                    let data = self.m.bytes(buf)?[a..b].to_vec();
                    match self.files.open[i].as_mut() {
                        Some(Handle::Stdout) | Some(Handle::Stderr) => {
                            let err = matches!(self.files.open[i], Some(Handle::Stderr));
                            if err {
                                let _ = std::io::stderr().write_all(&data);
                                self.output.extend_from_slice(&data);
                            } else {
                                self.write_output(&data);
                            }
                            data.len()
                        }
                        Some(Handle::File {
                            file,
                            writable: true,
                        }) => match file.write_all(&data) {
                            Ok(()) => data.len(),
                            Err(_) => return FAIL,
                        },
                        _ => return FAIL,
                    }
                } else {
                    let mut data = vec![0u8; b - a];
                    let got = match self.files.open[i].as_mut() {
                        Some(Handle::File { file, .. }) => match file.read(&mut data) {
                            Ok(k) => k,
                            Err(_) => return FAIL,
                        },
                        Some(Handle::Stdin) => std::io::stdin().read(&mut data).unwrap_or(0),
                        _ => return FAIL,
                    };
                    self.m.bytes_mut(buf)?[a..a + got].copy_from_slice(&data[..got]);
                    got
                };
                let v = self.positive_int((done / unit) as u64)?;
                self.pop_n_push(5, v)?;
                Ok(Prim::Done)
            }
            "primitiveFileFlush" | "primitiveFileSync" => {
                let Some(i) = self.handle_index(self.stack_value(0)?) else {
                    return FAIL;
                };
                if let Some(Handle::File { file, .. }) = self.files.open[i].as_mut() {
                    let _ = file.flush();
                }
                self.pop_n(1)?;
                Ok(Prim::Done)
            }
            "primitiveFileTruncate" => {
                let (h, p) = (self.stack_value(1)?, self.stack_value(0)?);
                let (Some(i), Some(Ok(p))) =
                    (self.handle_index(h), self.int_value(p).map(u64::try_from))
                else {
                    return FAIL;
                };
                match self.files.open[i].as_mut() {
                    Some(Handle::File {
                        file,
                        writable: true,
                    }) => {
                        if file.set_len(p).is_err() {
                            return FAIL;
                        }
                    }
                    _ => return FAIL,
                }
                self.pop_n(2)?;
                Ok(Prim::Done)
            }
            "primitiveFileDelete" => {
                if !self.opts.allow_files {
                    return FAIL;
                }
                let Some(path) = self.bytes_of(self.stack_value(0)?) else {
                    return FAIL;
                };
                if std::fs::remove_file(String::from_utf8_lossy(&path).as_ref()).is_err() {
                    return FAIL;
                }
                self.pop_n(1)?;
                Ok(Prim::Done)
            }
            "primitiveDirectoryDelimitor" => {
                let c = self.chr('/' as u32);
                self.pop_n_push(1, c)?;
                Ok(Prim::Done)
            }
            _ => FAIL,
        }
    }
}

/// File primitives that exist here (a failure of these is the file
/// system's answer, not a missing primitive).
const KNOWN_FILE_PRIMITIVES: &[&str] = &[
    "primitiveFileStdioHandles",
    "primitiveFileDescriptorType",
    "primitiveFileOpen",
    "primitiveFileClose",
    "primitiveFileSize",
    "primitiveFileGetPosition",
    "primitiveFileAtEnd",
    "primitiveFileSetPosition",
    "primitiveFileWrite",
    "primitiveFileRead",
    "primitiveFileFlush",
    "primitiveFileSync",
    "primitiveFileTruncate",
    "primitiveFileDelete",
    "primitiveDirectoryDelimitor",
];
