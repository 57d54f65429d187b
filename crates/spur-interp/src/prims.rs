//! Numbered primitives. A primitive that is not here fails, so the image's
//! fallback code runs, as in every VM.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spur_format::raw::{FMT_COMPILED_METHOD, FMT_INDEXABLE};
use spur_format::WordSize;
use spur_runtime::special_objects::index as so;

use crate::interp::{Prim, Stop, StopKind, Timer, Vm, R, STACKP, TEMP0};
use crate::mem::Oop;

/// Seconds from 1901-01-01 to 1970-01-01.
const EPOCH_1901: u64 = 2_177_452_800;

const FAIL: R<Prim> = Ok(Prim::Fail(1));
/// Error codes of the primitive error table (1-based).
const BAD_RECEIVER: u32 = 2;
const BAD_ARGUMENT: u32 = 3;
const BAD_INDEX: u32 = 4;
const NO_MODIFICATION: u32 = 8;

/// How an object's indexable part is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pointers,
    Words64,
    Words32,
    Words16,
    Bytes,
    Method,
    Other,
}

impl Vm<'_> {
    /// Runs primitive `p` with `argc` arguments for `method`.
    pub(crate) fn primitive(&mut self, p: u16, argc: u32, method: Oop) -> R<Prim> {
        let n = argc as u64;
        // Primitives that take a fixed number of arguments fail on any
        // other count; the mirror forms (the object as an extra first
        // argument, as Context's `object:instVarAt:` and kin send them)
        // are accepted where marked. Operands are read from the stack top
        // down and `argc + 1` values popped, so both forms share the code.
        if let Some((k, mirror)) = fixed_argc(p) {
            if argc != k && !(mirror && argc == k + 1) {
                return FAIL;
            }
        }
        match p {
            1..=17 => {
                if argc != 1 {
                    return FAIL;
                }
                let (Some(x), Some(y)) = (
                    self.m.small_int(self.stack_value(1)?),
                    self.m.small_int(self.stack_value(0)?),
                ) else {
                    return FAIL;
                };
                match self.int_prim(p, x, y) {
                    Some(r) => self.done(n + 1, r),
                    None => FAIL,
                }
            }
            21..=37 => self.large_int_prim64(p, argc),
            18 => {
                // x @ y
                let point = self.m.special(so::CLASS_POINT);
                let Some(ci) = self.m.class_index_of_class(point) else {
                    return FAIL;
                };
                let (x, y) = (self.stack_value(1)?, self.stack_value(0)?);
                let pt = self.m.allocate_slots(ci, 1, 2)?;
                self.m.store(pt, 0, x)?;
                self.m.store(pt, 1, y)?;
                self.done(n + 1, pt)
            }
            40 | 540 => match self.m.small_int(self.stack_value(0)?) {
                Some(v) => {
                    let f = self.make_float(v as f64)?;
                    self.done(n + 1, f)
                }
                None => FAIL,
            },
            41..=59 | 541..=559 => self.float_prim(p % 500, argc),
            60 | 63 | 210 => {
                let (o, i) = (self.stack_value(1)?, self.stack_value(0)?);
                match self.at(o, i, p == 63)? {
                    Ok(v) => self.done(n + 1, v),
                    Err(code) => Ok(Prim::Fail(code)),
                }
            }
            61 | 64 | 211 => {
                let (o, i, v) = (
                    self.stack_value(2)?,
                    self.stack_value(1)?,
                    self.stack_value(0)?,
                );
                match self.at_put(o, i, v, p == 64)? {
                    Ok(()) => self.done(n + 1, v),
                    Err(code) => Ok(Prim::Fail(code)),
                }
            }
            62 => {
                let o = self.stack_value(0)?;
                match self.indexable_size(o)?.and_then(|s| i64::try_from(s).ok()) {
                    Some(s) => {
                        let v = self.int(s);
                        self.done(n + 1, v)
                    }
                    None => FAIL,
                }
            }
            68 => {
                let (o, i) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(i) = self.m.small_int(i) else {
                    return FAIL;
                };
                let h = self.header_of(o)?;
                let Some(k) = index0(i, h.num_literals + 1) else {
                    return Ok(Prim::Fail(BAD_INDEX));
                };
                let v = self.m.fetch(o, k)?;
                self.done(n + 1, v)
            }
            69 => {
                let (o, i, v) = (
                    self.stack_value(2)?,
                    self.stack_value(1)?,
                    self.stack_value(0)?,
                );
                let Some(i) = self.m.small_int(i) else {
                    return FAIL;
                };
                let h = self.header_of(o)?;
                let Some(k) = index0(i, h.num_literals + 1) else {
                    return Ok(Prim::Fail(BAD_INDEX));
                };
                self.m.store(o, k, v)?;
                self.flush_cache();
                // Its header (slot 0) is in the code cache.
                self.forget_code(o);
                self.done(n + 1, v)
            }
            70 => {
                let class = self.stack_value(0)?;
                match self.instantiate(class, 0, false)? {
                    Some(o) => self.done(n + 1, o),
                    None => FAIL,
                }
            }
            71 => {
                let (class, size) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(Ok(size)) = self.m.small_int(size).map(u64::try_from) else {
                    return Ok(Prim::Fail(BAD_ARGUMENT));
                };
                match self.instantiate(class, size, true)? {
                    Some(o) => self.done(n + 1, o),
                    None => FAIL,
                }
            }
            72 | 248 | 249 => {
                // elementsForwardIdentityTo: (72 copies the hash, 248 does
                // not, 249 says in its argument): a one-way become of each
                // element of the receiver into the same one of the argument.
                let want: u32 = if p == 249 { 2 } else { 1 };
                if argc != want {
                    return FAIL;
                }
                let (a, b) = (
                    self.stack_value(u64::from(want))?,
                    self.stack_value(u64::from(want) - 1)?,
                );
                let copy_hash = match p {
                    72 => true,
                    248 => false,
                    _ => self.stack_value(0)? == self.tru,
                };
                for o in [a, b] {
                    if o.is_immediate(self.word) || self.m.class_index_of(o)? != self.ci_array {
                        return Ok(Prim::Fail(BAD_ARGUMENT));
                    }
                }
                let len = self.m.num_slots(a)?;
                if self.m.num_slots(b)? != len {
                    return Ok(Prim::Fail(BAD_ARGUMENT));
                }
                let pairs: Vec<(Oop, Oop)> = (0..len)
                    .map(|i| Ok((self.m.fetch(a, i)?, self.m.fetch(b, i)?)))
                    .collect::<Result<_, crate::mem::MemoryError>>()?;
                if !pairs.is_empty() {
                    self.store_registers()?;
                    let mut roots = [self.ctx, self.method, self.receiver];
                    if self
                        .m
                        .become_forward(&pairs, copy_hash, &mut roots)
                        .is_err()
                    {
                        return Ok(Prim::Fail(BAD_ARGUMENT));
                    }
                    [self.ctx, self.method, self.receiver] = roots;
                    self.after_become()?;
                }
                self.pop_n(n)?;
                Ok(Prim::Done)
            }
            73 | 173 => {
                let (o, i) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(i) = self.m.small_int(i) else {
                    return FAIL;
                };
                let Some(k) = index0(i, u64::MAX) else {
                    return FAIL;
                };
                if o.is_immediate(self.word) {
                    return FAIL;
                }
                match self.kind(o)? {
                    Kind::Pointers => {}
                    _ => return FAIL,
                }
                match self.m.fetch(o, k) {
                    Ok(v) => self.done(n + 1, v),
                    Err(_) => Ok(Prim::Fail(BAD_INDEX)),
                }
            }
            74 | 174 => {
                let (o, i, v) = (
                    self.stack_value(2)?,
                    self.stack_value(1)?,
                    self.stack_value(0)?,
                );
                let Some(i) = self.m.small_int(i) else {
                    return FAIL;
                };
                let Some(k) = index0(i, u64::MAX) else {
                    return FAIL;
                };
                if o.is_immediate(self.word) || self.kind(o)? != Kind::Pointers {
                    return FAIL;
                }
                if self.m.header(o)?.is_immutable() {
                    return Ok(Prim::Fail(NO_MODIFICATION));
                }
                match self.m.store(o, k, v) {
                    Ok(()) => self.done(n + 1, v),
                    Err(_) => Ok(Prim::Fail(BAD_INDEX)),
                }
            }
            75 | 175 => {
                let o = self.stack_value(0)?;
                if o.is_immediate(self.word) {
                    return FAIL;
                }
                let h = self.m.identity_hash(o)?;
                let v = self.int(i64::from(h));
                self.done(n + 1, v)
            }
            76 => {
                // storeStackp:
                let (c, sp) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(Ok(s)) = self.m.small_int(sp).map(u64::try_from) else {
                    return FAIL;
                };
                let slots = self.m.num_slots(c)?;
                if TEMP0 + s > slots {
                    return FAIL;
                }
                let old = self.m.fetch(c, STACKP)?;
                let old = self
                    .m
                    .small_int(old)
                    .map_or(0, |o| u64::try_from(o).unwrap_or(0));
                for i in old..s {
                    self.m.store(c, TEMP0 + i, self.nil)?;
                }
                self.m.store(c, STACKP, sp)?;
                self.done(n + 1, c)
            }
            83 => self.perform(argc),
            84 | 100 => self.perform_with_args(argc, p == 100),
            85 => {
                let s = self.stack_value(0)?;
                self.signal(s)?;
                Ok(Prim::Done)
            }
            86 => {
                let s = self.stack_value(0)?;
                self.wait(s)?;
                Ok(Prim::Done)
            }
            87 => {
                let pr = self.stack_value(0)?;
                if self.m.fetch(pr, 1)? == self.nil {
                    return FAIL;
                }
                self.resume(pr)?;
                Ok(Prim::Done)
            }
            88 => {
                let pr = self.stack_value(0)?;
                if pr == self.active_process()? {
                    self.pop_n_push(1, self.nil)?;
                    self.suspend_active()?;
                    Ok(Prim::Done)
                } else {
                    let list = self.m.fetch(pr, 3)?;
                    if list == self.nil || !self.remove_process(list, pr)? {
                        return FAIL;
                    }
                    self.done(n + 1, list)
                }
            }
            167 => {
                self.yield_active()?;
                Ok(Prim::Done)
            }
            89 | 116 | 119 => {
                self.flush_cache();
                self.pop_n(n)?;
                Ok(Prim::Done)
            }
            77 if argc == 0 => self.primitive_some_instance(),
            78 if argc == 0 => self.primitive_next_instance(),
            177 if argc == 0 => self.primitive_all_instances(),
            97 => self.primitive_snapshot(argc),
            105 => self.replace(),
            110 => {
                let (a, b) = (self.stack_value(1)?, self.stack_value(0)?);
                let r = self.boolean(a == b);
                self.done(n + 1, r)
            }
            169 => {
                let (a, b) = (self.stack_value(1)?, self.stack_value(0)?);
                let r = self.boolean(a != b);
                self.done(n + 1, r)
            }
            111 => {
                let o = self.stack_value(0)?;
                match self.m.class_of(o) {
                    Some(c) => self.done(n + 1, c),
                    None => FAIL,
                }
            }
            112 => {
                let v = self.positive_int(self.m.bytes_left())?;
                self.done(n + 1, v)
            }
            113 => {
                let code = if argc >= 1 {
                    self.m.small_int(self.stack_value(0)?).unwrap_or(0)
                } else {
                    0
                };
                // Cog passes the code to exit(3) as a C `int`: its low 32 bits.
                let b = code.to_le_bytes();
                Err(Stop::Quit(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            117 => self.named_primitive(method, argc),
            121 => {
                if argc == 0 {
                    let path =
                        std::os::unix::ffi::OsStrExt::as_bytes(self.opts.image_path.as_os_str())
                            .to_vec();
                    let s = self.new_string(&path)?;
                    self.done(n + 1, s)
                } else if argc == 1 {
                    // imageName: the path the next snapshot writes to.
                    // The string's bytes are the path's (UTF-8 as Pharo encodes it).
                    let name = self.stack_value(0)?;
                    if self.m.string(name).is_none_or(|p| p.is_empty()) {
                        return Ok(Prim::Fail(BAD_ARGUMENT));
                    }
                    let bytes = self.m.bytes(name)?;
                    self.opts.image_path = std::path::PathBuf::from(
                        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes),
                    );
                    self.pop_n(n)?;
                    Ok(Prim::Done)
                } else {
                    FAIL
                }
            }
            124 | 125 | 133 | 134 => {
                self.pop_n(n)?;
                Ok(Prim::Done)
            }
            129 => {
                let s = self.m.special_objects();
                self.done(n + 1, s)
            }
            130 | 131 => {
                // The scavenge runs at the next safe point (gc.rs).
                self.m.request_scavenge();
                let v = self.positive_int(self.m.bytes_left())?;
                self.done(n + 1, v)
            }
            135 => {
                let v = self.int(self.millisecond_clock());
                self.done(n + 1, v)
            }
            136 | 242 => {
                let (sem, when) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(t) = self.int_value(when) else {
                    return FAIL;
                };
                if sem == self.nil || self.m.header(sem).is_err() {
                    self.timer = None;
                } else {
                    let wait = if p == 136 {
                        let now = self.millisecond_clock();
                        Duration::from_millis(u64::try_from(t.saturating_sub(now)).unwrap_or(0))
                    } else {
                        let now = i64::try_from(utc_micros() + EPOCH_1901 * 1_000_000)
                            .unwrap_or(i64::MAX);
                        Duration::from_micros(u64::try_from(t.saturating_sub(now)).unwrap_or(0))
                    };
                    // At most a day ahead: a timer further off is as good as none.
                    let at = Instant::now() + wait.min(Duration::from_secs(86_400));
                    self.timer = Some(Timer { semaphore: sem, at });
                }
                self.pop_n(2)?;
                Ok(Prim::Done)
            }
            137 => {
                let s = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    + EPOCH_1901;
                let v = self.positive_int(s)?;
                self.done(n + 1, v)
            }
            142 => {
                let path = self.opts.vm_path.to_string_lossy().into_owned();
                let dir = match path.rfind('/') {
                    Some(i) => path[..=i].to_string(),
                    None => path,
                };
                let s = self.new_string(dir.as_bytes())?;
                self.done(n + 1, s)
            }
            145 => {
                let (o, v) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(v) = self.int_value(v) else {
                    return FAIL;
                };
                // One element's bytes; a value wider than an element fails.
                let unit = match self.kind(o)? {
                    Kind::Bytes => u8::try_from(v).ok().map(|v| vec![v]),
                    Kind::Words16 => u16::try_from(v).ok().map(|v| v.to_le_bytes().to_vec()),
                    Kind::Words32 => u32::try_from(v).ok().map(|v| v.to_le_bytes().to_vec()),
                    Kind::Words64 => u64::try_from(v).ok().map(|v| v.to_le_bytes().to_vec()),
                    _ => return FAIL,
                };
                let Some(unit) = unit else {
                    return FAIL;
                };
                for c in self.m.bytes_mut(o)?.chunks_exact_mut(unit.len()) {
                    c.copy_from_slice(&unit);
                }
                self.pop_n(1)?;
                Ok(Prim::Done)
            }
            148 => {
                let o = self.stack_value(0)?;
                if o.is_immediate(self.word) {
                    return self.done(n + 1, o);
                }
                let c = crate::mem::shallow_copy(self.m, o)?;
                self.done(n + 1, c)
            }
            149 => {
                let a = self.stack_value(0)?;
                let Some(a) = self.m.small_int(a) else {
                    return FAIL;
                };
                match self.attribute(a) {
                    Some(s) => {
                        let s = self.new_string(s.as_bytes())?;
                        self.done(n + 1, s)
                    }
                    None => {
                        let nil = self.nil;
                        self.done(n + 1, nil)
                    }
                }
            }
            163 => {
                let o = self.stack_value(0)?;
                let r = !o.is_immediate(self.word) && self.m.header(o)?.is_immutable();
                let r = self.boolean(r || o.is_immediate(self.word));
                self.done(n + 1, r)
            }
            170 => {
                let v = self.stack_value(0)?;
                match self.m.small_int(v).map(u32::try_from) {
                    Some(Ok(c)) if c <= 0x3FFF_FFFF => {
                        let ch = self.chr(c);
                        self.done(n + 1, ch)
                    }
                    _ => Ok(Prim::Fail(BAD_ARGUMENT)),
                }
            }
            171 => {
                let o = self.stack_value(0)?;
                if let Some(c) = self.m.character(o) {
                    let v = self.int(c as i64);
                    self.done(n + 1, v)
                } else if let Some(i) = self.m.small_int(o) {
                    let v = self.int(i);
                    self.done(n + 1, v)
                } else if self.m.small_float(o).is_some() {
                    // The float's bits, rotated as the tagged form holds them (61 bits).
                    let Ok(bits) = i64::try_from(o.bits() >> 3) else {
                        return FAIL;
                    };
                    let v = self.int(bits);
                    self.done(n + 1, v)
                } else {
                    FAIL
                }
            }
            176 => {
                let v = self.int(0x3F_FFFF);
                self.done(n + 1, v)
            }
            188 => {
                // withArgs: argArray executeMethod: compiledMethod
                let (args, m) = (self.stack_value(1)?, self.stack_value(0)?);
                if self.m.class_index_of(args)? != self.ci_array
                    || self.m.format(m).map_or(true, |f| f < FMT_COMPILED_METHOD)
                {
                    return FAIL;
                }
                let k = self.m.num_slots(args)?;
                let h = self.header_of(m)?;
                if u64::from(h.num_args) != k {
                    return FAIL;
                }
                let rcvr = self.stack_value(2)?;
                self.pop_n(2)?;
                for i in 0..k {
                    let v = self.m.fetch(args, i)?;
                    self.push(v)?;
                }
                let prim = self.primitive_index(m)?;
                let sel = self.nil;
                self.execute_method(rcvr, m, u32::from(h.num_args), prim, sel)?;
                Ok(Prim::Done)
            }
            195..=199 => FAIL,
            // Kept in step with `interp::is_value_primitive`.
            201..=205 | 207 | 209 | 221 | 222 => {
                let c = self.stack_value(n)?;
                self.activate_closure(c, argc)
            }
            206 | 208 => {
                let (c, args) = (self.stack_value(1)?, self.stack_value(0)?);
                if self.m.class_index_of(args)? != self.ci_array {
                    return FAIL;
                }
                let k = self.m.num_slots(args)?;
                let na = self.m.fetch(c, crate::interp::CLOSURE_NUM_ARGS)?;
                let Ok(k32) = u32::try_from(k) else {
                    return FAIL;
                };
                if self.m.small_int(na) != Some(i64::from(k32)) {
                    return FAIL;
                }
                self.pop_n(1)?;
                for i in 0..k {
                    let v = self.m.fetch(args, i)?;
                    self.push(v)?;
                }
                match self.activate_closure(c, k32)? {
                    Prim::Done => Ok(Prim::Done),
                    Prim::Fail(e) => {
                        self.pop_n(k)?;
                        self.push(args)?;
                        Ok(Prim::Fail(e))
                    }
                }
            }
            230 => {
                // relinquishProcessor: sleep until the timer, at most the
                // microseconds asked for.
                let us = self.m.small_int(self.stack_value(0)?).map_or(1000, |us| {
                    u64::try_from(us.clamp(0, 1_000_000)).unwrap_or(0)
                });
                // The idle process relinquishes when nothing else can run:
                // with no timer pending, nothing ever will (no input, no
                // other threads signal here).
                let Some(t) = self.timer else {
                    // Another thread holding the semaphore table's signaller may still wake it.
                    if self.wait_for_signal()? {
                        for sem in self.external_signals() {
                            self.signal(sem)?;
                        }
                        self.pop_n(1)?;
                        return Ok(Prim::Done);
                    }
                    return Err(Stop::Halt(
                        StopKind::Idle,
                        "only the idle process can run, no timer is pending and nothing else can signal"
                            .into(),
                    ));
                };
                let at = t.at.min(Instant::now() + Duration::from_micros(us));
                self.sleep_until(at)?;
                self.pop_n(1)?;
                Ok(Prim::Done)
            }
            240 | 241 => {
                let mut us = utc_micros() + EPOCH_1901 * 1_000_000;
                if p == 241 {
                    us = us.wrapping_add_signed(local_offset_seconds() * 1_000_000);
                }
                let v = self.positive_int(us)?;
                self.done(n + 1, v)
            }
            254 => self.vm_parameter(argc),
            _ => FAIL,
        }
    }

    /// The millisecond clock of primitives 135 and 136: milliseconds since
    /// the run started, wrapped to 29 bits as the image expects.
    fn millisecond_clock(&self) -> i64 {
        let ms = self.start.elapsed().as_millis() & 0x1FFF_FFFF;
        i64::try_from(ms).unwrap_or(0)
    }

    /// Pops `n` and pushes `v`: the primitive succeeded.
    fn done(&mut self, n: u64, v: Oop) -> R<Prim> {
        self.pop_n_push(n, v)?;
        Ok(Prim::Done)
    }

    // ---- integers and floats ----

    /// `v` as a SmallInteger or a LargePositiveInteger.
    pub(crate) fn positive_int(&mut self, v: u64) -> R<Oop> {
        if let Some(o) = i64::try_from(v).ok().and_then(|v| self.m.from_small_int(v)) {
            return Ok(o);
        }
        let len = 8 - (v.leading_zeros() / 8) as usize;
        let o = self.m.allocate_bytes(self.ci_large_pos, len as u64)?;
        self.m
            .bytes_mut(o)?
            .copy_from_slice(&v.to_le_bytes()[..len]);
        Ok(o)
    }

    /// `v` as a SmallInteger, a LargePositiveInteger or a LargeNegativeInteger.
    #[allow(dead_code)]
    pub(crate) fn signed_int(&mut self, v: i64) -> R<Oop> {
        if let Some(o) = self.m.from_small_int(v) {
            return Ok(o);
        }
        if let Ok(v) = u64::try_from(v) {
            return self.positive_int(v);
        }
        let m = v.unsigned_abs();
        let len = 8 - (m.leading_zeros() / 8) as usize;
        let o = self.m.allocate_bytes(self.ci_large_neg, len as u64)?;
        self.m
            .bytes_mut(o)?
            .copy_from_slice(&m.to_le_bytes()[..len]);
        Ok(o)
    }

    /// A SmallInteger's value, or a large integer's of at most 8 bytes.
    pub(crate) fn int_value(&self, o: Oop) -> Option<i64> {
        if let Some(v) = self.m.small_int(o) {
            return Some(v);
        }
        let ci = self.m.class_index_of(o).ok()?;
        if ci != self.ci_large_pos && ci != self.ci_large_neg {
            return None;
        }
        let b = self.m.bytes(o).ok()?;
        let len = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
        if len > 8 {
            return None;
        }
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(&b[..len]);
        let m = u64::from_le_bytes(buf);
        if ci == self.ci_large_pos {
            i64::try_from(m).ok()
        } else {
            0i64.checked_sub_unsigned(m)
        }
    }

    /// A Float's value (boxed or SmallFloat64), or a SmallInteger's as a float.
    pub(crate) fn float_value(&self, o: Oop) -> Option<f64> {
        if let Some(f) = self.m.small_float(o) {
            return Some(f);
        }
        if let Some(i) = self.m.small_int(o) {
            return Some(i as f64);
        }
        if self.m.class_index_of(o).ok()? != self.ci_float {
            return None;
        }
        let b = self.m.bytes(o).ok()?;
        let b: [u8; 8] = b.get(..8)?.try_into().ok()?;
        // Wiring left boxed floats in the host's order (§1.2).
        Some(f64::from_le_bytes(b))
    }

    /// `f` as a SmallFloat64 when it has one, else a boxed Float.
    pub(crate) fn make_float(&mut self, f: f64) -> R<Oop> {
        if let Some(o) = self.m.from_small_float(f) {
            return Ok(o);
        }
        let o = self.m.allocate_words(self.ci_float, 10, 2)?;
        self.m.bytes_mut(o)?[..8].copy_from_slice(&f.to_le_bytes());
        Ok(o)
    }

    fn float_prim(&mut self, p: u16, argc: u32) -> R<Prim> {
        let n = argc as u64;
        let Some(x) = self.float_value(self.stack_value(n)?) else {
            return FAIL;
        };
        if self.m.small_int(self.stack_value(n)?).is_some() {
            return FAIL;
        }
        let y = if argc >= 1 {
            match self.float_value(self.stack_value(0)?) {
                Some(y) => Some(y),
                None => return FAIL,
            }
        } else {
            None
        };
        let f = |v: f64| Ok::<_, Stop>(Some(v));
        let r: Option<f64> = match (p, y) {
            (41, Some(y)) => f(x + y)?,
            (42, Some(y)) => f(x - y)?,
            (49, Some(y)) => f(x * y)?,
            (50, Some(y)) => {
                if y == 0.0 {
                    return FAIL;
                }
                f(x / y)?
            }
            (43..=48, Some(y)) => {
                let b = match p {
                    43 => x < y,
                    44 => x > y,
                    45 => x <= y,
                    46 => x >= y,
                    47 => x == y,
                    _ => x != y,
                };
                let b = self.boolean(b);
                return self.done(n + 1, b);
            }
            (51, None) => {
                let t = x.trunc();
                if !(t.is_finite() && t.abs() < 9.0e18) {
                    return FAIL;
                }
                // Integral and within ±9e18 (checked above), so in i64's range.
                #[allow(clippy::cast_possible_truncation)]
                let t = t as i64;
                return match self.m.from_small_int(t) {
                    Some(v) => self.done(1, v),
                    None => FAIL,
                };
            }
            (52, None) => f(x.fract())?,
            (53, None) => {
                if x == 0.0 || !x.is_finite() {
                    let v = self.int(0);
                    return self.done(1, v);
                }
                let e = i64::from(u16::try_from((x.to_bits() >> 52) & 0x7FF).unwrap_or(0)) - 1023;
                let v = self.int(e);
                return self.done(1, v);
            }
            (54, Some(_)) => {
                // As Cog: the exponent is a SmallInteger (anything else
                // fails and the fallback runs), clipped to ±4096, beyond
                // which every finite float gives 0 or infinity.
                let Some(e) = self.m.small_int(self.stack_value(0)?) else {
                    return FAIL;
                };
                let e = i32::try_from(e.clamp(-4096, 4096)).unwrap_or(0);
                f(times_two_power(x, e))?
            }
            (55, None) => f(x.sqrt())?,
            (56, None) => f(x.sin())?,
            (57, None) => f(x.atan())?,
            (58, None) => f(x.ln())?,
            (59, None) => f(x.exp())?,
            _ => None,
        };
        match r {
            Some(v) => {
                let o = self.make_float(v)?;
                self.done(n + 1, o)
            }
            None => FAIL,
        }
    }

    // ---- indexing ----

    /// The number of fixed (named) slots of instances of `o`'s class.
    fn fixed_slots(&self, o: Oop) -> R<u64> {
        let Some(class) = self.m.class_of(o) else {
            return Ok(0);
        };
        let f = self.m.fetch(class, 2)?;
        Ok(self.m.small_int(f).map_or(0, |f| u64::from(low16(f))))
    }

    fn kind(&self, o: Oop) -> R<Kind> {
        if o.is_immediate(self.word) {
            return Ok(Kind::Other);
        }
        Ok(match self.m.format(o)? {
            0..=5 => Kind::Pointers,
            9 => Kind::Words64,
            10 | 11 => Kind::Words32,
            12..=15 => Kind::Words16,
            16..=23 => Kind::Bytes,
            24..=31 => Kind::Method,
            _ => Kind::Other,
        })
    }

    /// Indexable elements of `o`, if it is indexable.
    fn indexable_size(&self, o: Oop) -> R<Option<u64>> {
        if o.is_immediate(self.word) {
            return Ok(None);
        }
        let f = self.m.format(o)?;
        Ok(match self.kind(o)? {
            Kind::Pointers => {
                if !matches!(f, FMT_INDEXABLE | 3 | 4) {
                    return Ok(None);
                }
                let fixed = self.fixed_slots(o)?;
                let n = self.m.num_slots(o)?;
                // A context's size is its stack pointer.
                if self.m.class_index_of(o)? == self.ci_context {
                    let sp = self.m.fetch(o, STACKP)?;
                    Some(
                        self.m
                            .small_int(sp)
                            .map_or(0, |sp| u64::try_from(sp).unwrap_or(0)),
                    )
                } else {
                    Some(n.saturating_sub(fixed))
                }
            }
            Kind::Words64 => Some(self.m.bytes(o)?.len() as u64 / 8),
            // The format's low bits count the last slot's unused units (§3.2).
            Kind::Words32 => (self.m.bytes(o)?.len() as u64 / 4).checked_sub(u64::from(f & 1)),
            Kind::Words16 => (self.m.bytes(o)?.len() as u64 / 2).checked_sub(u64::from(f & 3)),
            Kind::Bytes | Kind::Method => Some(self.m.bytes(o)?.len() as u64),
            Kind::Other => None,
        })
    }

    /// `o at: i` (1-based over the indexable part). `Err(code)`: fail.
    fn at(&mut self, o: Oop, i: Oop, chars: bool) -> R<Result<Oop, u32>> {
        let Some(i) = self.m.small_int(i) else {
            return Ok(Err(BAD_INDEX));
        };
        let Some(size) = self.indexable_size(o)? else {
            return Ok(Err(BAD_RECEIVER));
        };
        let Some((k, ku)) = index0(i, size).and_then(|k| Some((k, usize::try_from(k).ok()?)))
        else {
            return Ok(Err(BAD_INDEX));
        };
        Ok(Ok(match self.kind(o)? {
            Kind::Pointers => {
                if chars {
                    return Ok(Err(BAD_RECEIVER));
                }
                let fixed = self.fixed_slots(o)?;
                self.m.fetch(o, fixed + k)?
            }
            Kind::Bytes => {
                let b = self.m.bytes(o)?[ku];
                if chars {
                    self.chr(u32::from(b))
                } else {
                    self.int(i64::from(b))
                }
            }
            Kind::Method => {
                let h = self.header_of(o)?;
                if k < (h.num_literals + 1) * self.word.bytes() {
                    return Ok(Err(BAD_INDEX));
                }
                let b = self.m.bytes(o)?[ku];
                self.int(i64::from(b))
            }
            Kind::Words16 => {
                let b = self.m.bytes(o)?;
                let at = ku * 2;
                let v = u16::from_le_bytes([b[at], b[at + 1]]);
                self.int(i64::from(v))
            }
            Kind::Words32 => {
                let b = self.m.bytes(o)?;
                let at = ku * 4;
                let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
                if chars {
                    self.chr(v)
                } else {
                    self.positive_int(u64::from(v))?
                }
            }
            Kind::Words64 => {
                let b = self.m.bytes(o)?;
                let at = ku * 8;
                let v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
                self.positive_int(v)?
            }
            Kind::Other => return Ok(Err(BAD_RECEIVER)),
        }))
    }

    fn at_put(&mut self, o: Oop, i: Oop, v: Oop, chars: bool) -> R<Result<(), u32>> {
        let Some(i) = self.m.small_int(i) else {
            return Ok(Err(BAD_INDEX));
        };
        let Some(size) = self.indexable_size(o)? else {
            return Ok(Err(BAD_RECEIVER));
        };
        let Some((k, ku)) = index0(i, size).and_then(|k| Some((k, usize::try_from(k).ok()?)))
        else {
            return Ok(Err(BAD_INDEX));
        };
        if self.m.header(o)?.is_immutable() {
            return Ok(Err(NO_MODIFICATION));
        }
        // The value to store, when it is in 0..=max.
        let unit = |vm: &Self, max: u64| -> Option<u64> {
            let x = if chars {
                vm.m.character(v).map(i64::from)
            } else {
                vm.int_value(v)
            }?;
            u64::try_from(x).ok().filter(|&x| x <= max)
        };
        match self.kind(o)? {
            Kind::Pointers => {
                if chars {
                    return Ok(Err(BAD_RECEIVER));
                }
                let fixed = self.fixed_slots(o)?;
                self.m.store(o, fixed + k, v)?;
            }
            Kind::Bytes => {
                let Some(Ok(x)) = unit(self, 255).map(u8::try_from) else {
                    return Ok(Err(BAD_ARGUMENT));
                };
                self.m.bytes_mut(o)?[ku] = x;
            }
            Kind::Method => {
                let h = self.header_of(o)?;
                let Some(Ok(x)) = unit(self, 255).map(u8::try_from) else {
                    return Ok(Err(BAD_ARGUMENT));
                };
                if k < (h.num_literals + 1) * self.word.bytes() {
                    return Ok(Err(BAD_INDEX));
                }
                self.m.bytes_mut(o)?[ku] = x;
                self.flush_code_cache();
            }
            Kind::Words16 => {
                let Some(Ok(x)) = unit(self, 0xFFFF).map(u16::try_from) else {
                    return Ok(Err(BAD_ARGUMENT));
                };
                let at = ku * 2;
                self.m.bytes_mut(o)?[at..at + 2].copy_from_slice(&x.to_le_bytes());
            }
            Kind::Words32 => {
                let Some(Ok(x)) = unit(self, 0xFFFF_FFFF).map(u32::try_from) else {
                    return Ok(Err(BAD_ARGUMENT));
                };
                let at = ku * 4;
                self.m.bytes_mut(o)?[at..at + 4].copy_from_slice(&x.to_le_bytes());
            }
            Kind::Words64 => {
                let Some(x) = unit(self, u64::MAX >> 1) else {
                    return Ok(Err(BAD_ARGUMENT));
                };
                let at = ku * 8;
                self.m.bytes_mut(o)?[at..at + 8].copy_from_slice(&x.to_le_bytes());
            }
            Kind::Other => return Ok(Err(BAD_RECEIVER)),
        }
        Ok(Ok(()))
    }

    /// `basicNew` / `basicNew:` of `class`.
    fn instantiate(&mut self, class: Oop, n: u64, indexable: bool) -> R<Option<Oop>> {
        let Some(ci) = self.m.class_index_of_class(class) else {
            return Ok(None);
        };
        let f = self.m.fetch(class, 2)?;
        let Some(f) = self.m.small_int(f) else {
            return Ok(None);
        };
        let spec = u8::try_from((f >> 16) & 0x1F).unwrap_or(u8::MAX);
        let fixed = u64::from(low16(f));
        if n > 1 << 28 {
            return Ok(None);
        }
        Ok(Some(match (spec, indexable) {
            (0 | 1 | 5, false) => self.m.allocate_slots(ci, spec, fixed)?,
            (2, true) => self.m.allocate_slots(ci, 2, n)?,
            (3 | 4, true) => self.m.allocate_slots(ci, spec, fixed + n)?,
            (2..=4, false) => self.m.allocate_slots(ci, spec, fixed)?,
            (9, _) => self.m.allocate_words(ci, 9, n)?,
            (10 | 11, _) => self.m.allocate_words(ci, 10, n)?,
            (12..=15, _) => self.m.allocate_words(ci, 12, n)?,
            (16..=23, _) => self.m.allocate_bytes(ci, n)?,
            _ => return Ok(None),
        }))
    }

    /// replaceFrom:to:with:startingAt: between objects of the same layout.
    fn replace(&mut self) -> R<Prim> {
        let (dst, start, stop, src, src_start) = (
            self.stack_value(4)?,
            self.stack_value(3)?,
            self.stack_value(2)?,
            self.stack_value(1)?,
            self.stack_value(0)?,
        );
        let (Some(start), Some(stop), Some(src_start)) = (
            self.m.small_int(start),
            self.m.small_int(stop),
            self.m.small_int(src_start),
        ) else {
            return FAIL;
        };
        let (kd, ks) = (self.kind(dst)?, self.kind(src)?);
        if kd != ks || kd == Kind::Other || kd == Kind::Method {
            return FAIL;
        }
        let (Some(dn), Some(sn)) = (self.indexable_size(dst)?, self.indexable_size(src)?) else {
            return FAIL;
        };
        // 0-based starts and the count (SmallIntegers, so no overflow here).
        let (Ok(count), Ok(start), Ok(src_start)) = (
            u64::try_from(stop - start + 1),
            u64::try_from(start - 1),
            u64::try_from(src_start - 1),
        ) else {
            return FAIL;
        };
        if count > 0 && (start + count > dn || src_start + count > sn) {
            return FAIL;
        }
        if count == 0 {
            self.pop_n(4)?;
            return Ok(Prim::Done);
        }
        if self.m.header(dst)?.is_immutable() {
            return Ok(Prim::Fail(NO_MODIFICATION));
        }
        match kd {
            Kind::Pointers => {
                let (fd, fs) = (self.fixed_slots(dst)?, self.fixed_slots(src)?);
                let vals: Vec<Oop> = (0..count)
                    .map(|i| self.m.fetch(src, fs + src_start + i))
                    .collect::<Result<_, _>>()?;
                for (i, v) in vals.into_iter().enumerate() {
                    self.m.store(dst, fd + start + i as u64, v)?;
                }
            }
            _ => {
                let unit: usize = match kd {
                    Kind::Words64 => 8,
                    Kind::Words32 => 4,
                    Kind::Words16 => 2,
                    _ => 1,
                };
                // All three are within the objects' sizes (checked above).
                let (Ok(s), Ok(d), Ok(count)) = (
                    usize::try_from(src_start),
                    usize::try_from(start),
                    usize::try_from(count),
                ) else {
                    return FAIL;
                };
                let s = s * unit;
                let bytes = self.m.bytes(src)?[s..s + count * unit].to_vec();
                let d = d * unit;
                self.m.bytes_mut(dst)?[d..d + bytes.len()].copy_from_slice(&bytes);
            }
        }
        self.pop_n(4)?;
        Ok(Prim::Done)
    }

    // ---- perform ----

    fn perform(&mut self, argc: u32) -> R<Prim> {
        if argc == 0 {
            return FAIL;
        }
        let sel = self.stack_value(u64::from(argc) - 1)?;
        // Slide the arguments down over the selector.
        let k = u64::from(argc) - 1;
        for i in 0..k {
            let v = self.stack_value(k - 1 - i)?;
            let at = self.sp - k - 1 + i;
            self.m.store(self.ctx, TEMP0 + at, v)?;
        }
        self.pop_n(1)?;
        self.send(sel, argc - 1, None)?;
        Ok(Prim::Done)
    }

    fn perform_with_args(&mut self, argc: u32, supered: bool) -> R<Prim> {
        let base = if supered { 2 } else { 1 };
        if argc != base + 1 {
            return FAIL;
        }
        let sel = self.stack_value(base as u64)?;
        let args = self.stack_value(base as u64 - 1)?;
        if args.is_immediate(self.word) || self.m.class_index_of(args)? != self.ci_array {
            return FAIL;
        }
        let class = if supered {
            Some(self.stack_value(0)?)
        } else {
            None
        };
        let k = self.m.num_slots(args)?;
        let Ok(k32) = u32::try_from(k) else {
            return FAIL;
        };
        self.pop_n(u64::from(argc))?;
        for i in 0..k {
            let v = self.m.fetch(args, i)?;
            self.push(v)?;
        }
        self.send(sel, k32, class)?;
        Ok(Prim::Done)
    }

    // ---- the system ----

    fn attribute(&self, a: i64) -> Option<String> {
        Some(match a {
            0 => self.opts.vm_path.to_string_lossy().into_owned(),
            1 => self.opts.image_path.to_string_lossy().into_owned(),
            1001 => "unix".into(),
            1002 => "linux".into(),
            1003 => std::env::consts::ARCH.into(),
            1004 => format!("spur-interp {}", env!("CARGO_PKG_VERSION")),
            1005 => "none".into(),
            1006 => format!(
                "spur-interp {} reference interpreter",
                env!("CARGO_PKG_VERSION")
            ),
            1007 => "StackInterpreter".into(),
            1008 => "none".into(),
            1009 => format!("spur-interp {}", env!("CARGO_PKG_VERSION")),
            a if a >= 2 => self.opts.args.get(usize::try_from(a - 2).ok()?)?.clone(),
            // -1, -2, ...: the VM's own options, as a VM's command line has them.
            a if a < 0 => self
                .opts
                .vm_options
                .get(usize::try_from(a.unsigned_abs() - 1).ok()?)?
                .clone(),
            _ => return None,
        })
    }

    fn vm_parameter(&mut self, argc: u32) -> R<Prim> {
        let value = |vm: &Self, i: i64| -> i64 {
            match i {
                40 => match vm.word {
                    WordSize::W64 => 8,
                    WordSize::W32 => 4,
                },
                41 => match vm.word {
                    WordSize::W64 => 68021,
                    WordSize::W32 => 6521,
                },
                44 => i64::try_from(vm.m.eden_free()).unwrap_or(i64::MAX),
                _ => 0,
            }
        };
        match argc {
            0 => {
                let a = self.new_array(71)?;
                for (slot, i) in (0..71).zip(1..) {
                    let v = self.int(value(self, i));
                    self.m.store(a, slot, v)?;
                }
                self.done(1, a)
            }
            1 => {
                let Some(i) = self.m.small_int(self.stack_value(0)?) else {
                    return FAIL;
                };
                if !(1..=71).contains(&i) {
                    return FAIL;
                }
                let v = self.int(value(self, i));
                self.done(2, v)
            }
            2 => {
                let Some(i) = self.m.small_int(self.stack_value(1)?) else {
                    return FAIL;
                };
                let v = self.int(value(self, i));
                self.done(3, v)
            }
            _ => FAIL,
        }
    }
}

/// The argument count a primitive takes, and whether it also has a mirror
/// form with one more; `None`: any count (the primitive checks).
fn fixed_argc(p: u16) -> Option<(u32, bool)> {
    Some(match p {
        18 | 68 | 71 | 76 | 145 | 149 => (1, false),
        40 | 540 | 70 | 129 | 171 => (0, false),
        69 | 136 | 242 | 188 => (2, false),
        105 => (4, false),
        60 | 63 | 210 | 73 | 173 | 110 | 169 => (1, true),
        61 | 64 | 211 | 74 | 174 => (2, true),
        62 | 75 | 175 | 111 | 148 | 163 => (0, true),
        _ => return None,
    })
}

fn utc_micros() -> u64 {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    u64::try_from(us).unwrap_or(u64::MAX)
}

/// `x * 2^e`, rounded once, as C's ldexp(3) computes it.
fn times_two_power(x: f64, e: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let (mut x, mut e) = (x, e);
    // Steps by 2^±1022 are exact while x stays normal (or overflows to
    // infinity, the answer then).
    while e > 1022 {
        x *= pow2(1022);
        e -= 1022;
        if x.is_infinite() {
            return x;
        }
    }
    while e < -1022 && x.abs() >= 1.0 {
        x *= pow2(-1022);
        e += 1022;
    }
    if e < -1074 {
        // |x| < 1 here, so the result is below half the least subnormal.
        return 0f64.copysign(x);
    }
    x * pow2(e)
}

/// 2^k exactly, for -1074 <= k <= 1023 (a subnormal below -1022).
fn pow2(k: i32) -> f64 {
    match u32::try_from(k + 1023) {
        Ok(biased) if biased > 0 => f64::from_bits(u64::from(biased) << 52),
        _ => f64::from_bits(1u64 << u32::try_from(k + 1074).unwrap_or(0)),
    }
}

/// `i` as a 0-based index when it is a 1-based index within `1..=size`.
pub(crate) fn index0(i: i64, size: u64) -> Option<u64> {
    u64::try_from(i)
        .ok()
        .filter(|&i| (1..=size).contains(&i))
        .map(|i| i - 1)
}

/// The low 16 bits of a class's format word (the number of fixed fields).
fn low16(f: i64) -> u16 {
    u16::try_from(f & 0xFFFF).unwrap_or(0)
}

/// The local time zone's offset: UTC here (the interpreter reads no
/// time-zone database).
fn local_offset_seconds() -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use spur_format::WordSize;

    use super::*;
    use crate::test_vm::with_vm;

    /// The answer of primitive `p` on `operands` (receiver first), or `None`
    /// when it failed.
    fn run(vm: &mut Vm<'_>, p: u16, operands: &[Oop]) -> Option<Oop> {
        for &o in operands {
            vm.push(o).unwrap();
        }
        let argc = u32::try_from(operands.len() - 1).unwrap();
        let nil = vm.nil;
        match vm.primitive(p, argc, nil).unwrap() {
            Prim::Done => {
                let v = vm.stack_value(0).unwrap();
                vm.pop_n(1).unwrap();
                Some(v)
            }
            Prim::Fail(_) => {
                vm.pop_n(operands.len() as u64).unwrap();
                None
            }
        }
    }

    #[test]
    fn word_objects_of_odd_unit_counts_have_that_many_elements() {
        with_vm(WordSize::W64, |vm| {
            let ci = vm.ci_string;
            // 3 32-bit units in two 64-bit slots (format 11); 5 16-bit
            // units in two slots (format 15).
            for (format, units) in [(10u8, 3u64), (12, 5)] {
                let o = vm.m.allocate_words(ci, format, units).unwrap();
                let size = run(vm, 62, &[o]).unwrap();
                assert_eq!(vm.m.small_int(size), Some(i64::try_from(units).unwrap()));
                let (last, past, seven) = (
                    vm.int(i64::try_from(units).unwrap()),
                    vm.int(i64::try_from(units + 1).unwrap()),
                    vm.int(7),
                );
                assert!(run(vm, 61, &[o, last, seven]).is_some());
                let v = run(vm, 60, &[o, last]).unwrap();
                assert_eq!(vm.m.small_int(v), Some(7));
                assert_eq!(run(vm, 60, &[o, past]), None, "beyond the last unit");
                assert_eq!(run(vm, 61, &[o, past, seven]), None);
            }
        });
    }

    #[test]
    fn fill_sets_every_element_of_a_bytes_or_words_object_in_range() {
        with_vm(WordSize::W64, |vm| {
            let ci = vm.ci_string;
            // Bytes, 16-bit, 32-bit and 64-bit units (formats 16, 12, 10, 9).
            for (format, units, max) in [
                (16u8, 5u64, 0xFFi64),
                (12, 5, 0xFFFF),
                (10, 3, 0xFFFF_FFFF),
                (9, 2, i64::from(u32::MAX) * 4),
            ] {
                let o = if format == 16 {
                    vm.m.allocate_bytes(ci, units).unwrap()
                } else {
                    vm.m.allocate_words(ci, format, units).unwrap()
                };
                let v = vm.int(max);
                assert_eq!(run(vm, 145, &[o, v]), Some(o), "format {format}");
                for i in 1..=units {
                    let at = vm.int(i64::try_from(i).unwrap());
                    let e = run(vm, 60, &[o, at]).unwrap();
                    assert_eq!(vm.int_value(e), Some(max), "format {format}, element {i}");
                }
                // A value beyond the element's width, or negative, fails.
                if max < i64::from(u32::MAX) * 4 {
                    let too_big = vm.int(max + 1);
                    assert_eq!(run(vm, 145, &[o, too_big]), None, "format {format}");
                }
                let negative = vm.int(-1);
                assert_eq!(run(vm, 145, &[o, negative]), None, "format {format}");
            }
        });
    }

    #[test]
    fn times_two_power_rounds_once_and_clips_as_ldexp_does() {
        assert_eq!(times_two_power(3.0, 4), 48.0);
        assert_eq!(times_two_power(1.0, -1074), f64::from_bits(1));
        assert_eq!(
            times_two_power(1.0, -1075),
            0.0,
            "half the least subnormal: to even"
        );
        assert_eq!(times_two_power(1.5, -1075), f64::from_bits(1));
        assert_eq!(
            times_two_power(1e300, -1100),
            1e300 * 2f64.powi(-550) * 2f64.powi(-550)
        );
        assert_eq!(times_two_power(f64::MIN_POSITIVE, 2000), 2f64.powi(978));
        assert_eq!(times_two_power(1.0, 4096), f64::INFINITY);
        assert_eq!(times_two_power(-1.0, -4096).to_bits(), (-0f64).to_bits());
        assert_eq!(times_two_power(0.0, 4096), 0.0);
        assert_eq!(pow2(-1022), f64::MIN_POSITIVE);
        assert_eq!(pow2(1023), 2f64.powi(1023));
    }
}
