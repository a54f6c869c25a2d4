//! Decoding what a backend produces — ring-buffer payloads, map keys and
//! per-CPU map values — into the output layer's [`Value`]s and
//! [`MapValue`]s, following the layouts the Artifact documents
//! (`nexus_compile::Type`, `nexus_compile::MapValue`).
//!
//! The per-event path ([`Decoder::fields_into`]) refills a caller-owned
//! `Vec<Value>` in place, so steady-state decoding does not allocate for
//! integers and strings.

use crate::ksyms::KernelSymbols;
use crate::value::{Frame, Hist, LHist, MapValue, MergeError, Symbol, Value, merge_per_cpu};
use nexus_compile::{self as compile, Field, Type};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before a field does.
    #[error("{what} needs {need} bytes at offset {offset}, but only {got} bytes were received")]
    Short {
        /// What was being decoded.
        what: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// Per-CPU slots could not be merged.
    #[error("merging per-CPU values failed: {0}")]
    Merge(#[from] MergeError),
}

/// Where stack ids are looked up (the backend's stack-trace map).
pub trait StackSource {
    /// Replace `frames` with the instruction pointers of stack `id`,
    /// innermost first. False when the stack is not (or no longer) there.
    fn stack_frames(&mut self, id: u32, frames: &mut Vec<u64>) -> bool;
}

/// A [`StackSource`] that knows no stacks (programs without stacks, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStacks;

impl StackSource for NoStacks {
    fn stack_frames(&mut self, _id: u32, _frames: &mut Vec<u64>) -> bool {
        false
    }
}

fn slice<'a>(
    bytes: &'a [u8],
    offset: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    offset
        .checked_add(len)
        .and_then(|end| bytes.get(offset..end))
        .ok_or(DecodeError::Short {
            what,
            offset,
            need: len,
            got: bytes.len().saturating_sub(offset),
        })
}

fn u64_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u64, DecodeError> {
    let b = slice(bytes, offset, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

fn u32_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u32, DecodeError> {
    let b = slice(bytes, offset, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The bytes before the first NUL.
fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// Turns raw bytes into values. Holds the kernel symbol table (read on the
/// first `ksym`/`kstack`) and a frame buffer reused across stacks.
#[derive(Debug, Default)]
pub struct Decoder {
    ksyms: Option<KernelSymbols>,
    frames: Vec<u64>,
}

impl Decoder {
    /// A decoder; kernel symbols are read lazily.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// A decoder with a given symbol table (tests).
    pub fn with_kernel_symbols(ksyms: KernelSymbols) -> Self {
        Decoder {
            ksyms: Some(ksyms),
            frames: Vec::new(),
        }
    }

    fn ksyms(&mut self) -> &KernelSymbols {
        self.ksyms.get_or_insert_with(KernelSymbols::load)
    }

    fn ksym(&mut self, addr: u64) -> Option<(String, u64)> {
        self.ksyms()
            .resolve(addr)
            .map(|(name, off)| (name.to_string(), off))
    }

    /// Decode one value of type `ty` at the start of `bytes`.
    pub fn value(
        &mut self,
        ty: &Type,
        bytes: &[u8],
        stacks: &mut dyn StackSource,
    ) -> Result<Value, DecodeError> {
        let mut v = Value::u64(0);
        self.value_into(ty, bytes, &mut v, stacks)?;
        Ok(v)
    }

    /// Decode into `out`, reusing its allocation when it already holds a
    /// value of the same shape (the per-event path).
    pub fn value_into(
        &mut self,
        ty: &Type,
        bytes: &[u8],
        out: &mut Value,
        stacks: &mut dyn StackSource,
    ) -> Result<(), DecodeError> {
        match ty {
            Type::Int { bits, signed } => {
                let raw = u64_at(bytes, 0, "integer")?;
                *out = if *signed {
                    Value::Signed {
                        value: raw as i64,
                        bits: *bits,
                    }
                } else {
                    Value::Unsigned {
                        value: raw,
                        bits: *bits,
                    }
                };
            }
            Type::Str { len } => {
                let s = c_str(slice(bytes, 0, *len as usize, "string")?);
                refill(out, s, Value::Str, |v| match v {
                    Value::Str(b) => Some(b),
                    _ => None,
                });
            }
            Type::Buf { len } => {
                let n = u32_at(bytes, 0, "buffer length")?.min(*len) as usize;
                let b = slice(bytes, 4, n, "buffer")?;
                refill(out, b, Value::Buf, |v| match v {
                    Value::Buf(b) => Some(b),
                    _ => None,
                });
            }
            Type::Ksym => {
                let addr = u64_at(bytes, 0, "ksym address")?;
                let name = self.ksym(addr).map(|(n, _)| n);
                *out = Value::Sym(Symbol { addr, name });
            }
            Type::Usym => {
                // User symbols need the process's mappings; not resolved
                // yet, so they print as addresses.
                let addr = u64_at(bytes, 0, "usym address")?;
                *out = Value::Sym(Symbol { addr, name: None });
            }
            Type::Kstack | Type::Ustack => {
                let id = u64_at(bytes, 0, "stack id")? as i64;
                let kernel = matches!(ty, Type::Kstack);
                *out = Value::Stack(self.stack(id, kernel, stacks));
            }
            Type::Tuple { fields, .. } => {
                let mut items = match std::mem::replace(out, Value::u64(0)) {
                    Value::Tuple(items) => items,
                    _ => Vec::new(),
                };
                self.fields_into(fields, bytes, &mut items, stacks)?;
                *out = Value::Tuple(items);
            }
        }
        Ok(())
    }

    fn stack(&mut self, id: i64, kernel: bool, stacks: &mut dyn StackSource) -> Vec<Frame> {
        // A negative id means the kernel could not collect the stack.
        let Ok(id) = u32::try_from(id) else {
            return Vec::new();
        };
        let mut frames = std::mem::take(&mut self.frames);
        let found = stacks.stack_frames(id, &mut frames);
        let out = if found {
            frames
                .iter()
                .take_while(|&&ip| ip != 0)
                .map(|&addr| Frame {
                    addr,
                    symbol: if kernel { self.ksym(addr) } else { None },
                })
                .collect()
        } else {
            Vec::new()
        };
        self.frames = frames;
        out
    }

    /// Decode `fields` (offsets into `bytes`) into `out`, reusing its
    /// elements; `out` ends with exactly one value per field.
    pub fn fields_into(
        &mut self,
        fields: &[Field],
        bytes: &[u8],
        out: &mut Vec<Value>,
        stacks: &mut dyn StackSource,
    ) -> Result<(), DecodeError> {
        out.truncate(fields.len());
        for (i, field) in fields.iter().enumerate() {
            let at = field.offset as usize;
            let rest = bytes.get(at..).ok_or(DecodeError::Short {
                what: "field",
                offset: at,
                need: field.ty.size() as usize,
                got: 0,
            })?;
            if i < out.len() {
                self.value_into(&field.ty, rest, &mut out[i], stacks)?;
            } else {
                let v = self.value(&field.ty, rest, stacks)?;
                out.push(v);
            }
        }
        Ok(())
    }

    /// Decode a map key laid out as `fields` (empty for a keyless map).
    pub fn key(
        &mut self,
        fields: &[Field],
        key: &[u8],
        stacks: &mut dyn StackSource,
    ) -> Result<Vec<Value>, DecodeError> {
        let mut out = Vec::with_capacity(fields.len());
        self.fields_into(fields, key, &mut out, stacks)?;
        Ok(out)
    }

    /// Decode and merge one key's per-CPU value slots (one slot for
    /// ordinary maps). `None` when no slot holds a value (a `min`/`max`
    /// that was never set).
    pub fn map_value(
        &mut self,
        spec: &compile::MapValue,
        slots: &[&[u8]],
        stacks: &mut dyn StackSource,
    ) -> Result<Option<MapValue>, DecodeError> {
        let mut decoded = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Some(v) = self.map_slot(spec, slot, stacks)? {
                decoded.push(v);
            }
        }
        if let compile::MapValue::Scalar { .. } = spec {
            // Plain values are never per-CPU; take the one slot.
            return Ok(decoded.into_iter().next());
        }
        Ok(merge_per_cpu(decoded)?)
    }

    fn map_slot(
        &mut self,
        spec: &compile::MapValue,
        b: &[u8],
        stacks: &mut dyn StackSource,
    ) -> Result<Option<MapValue>, DecodeError> {
        use compile::MapValue as C;
        let v = match spec {
            C::Scalar { ty } => MapValue::Value(self.value(ty, b, stacks)?),
            C::Count => MapValue::Count(u64_at(b, 0, "count")?),
            C::Sum { .. } => MapValue::Sum(u64_at(b, 0, "sum")? as i64),
            C::Min { .. } | C::Max { .. } => {
                // `[value, set]`: a CPU that never ran the aggregation left
                // `set` zero, and its zero must not win the comparison.
                if u64_at(b, 8, "min/max flag")? == 0 {
                    return Ok(None);
                }
                let value = u64_at(b, 0, "min/max")? as i64;
                if matches!(spec, C::Min { .. }) {
                    MapValue::Min(value)
                } else {
                    MapValue::Max(value)
                }
            }
            C::Avg { .. } | C::Stats { .. } => {
                let count = u64_at(b, 0, "avg count")?;
                let total = u64_at(b, 8, "avg sum")? as i64;
                if matches!(spec, C::Avg { .. }) {
                    MapValue::Avg { count, total }
                } else {
                    MapValue::Stats { count, total }
                }
            }
            C::Hist => MapValue::Hist(Hist {
                buckets: counters(b, compile::HIST_SLOTS as usize)?,
            }),
            C::Lhist { min, max, step } => {
                let mut l = LHist::new(*min, *max, *step);
                l.buckets = counters(b, spec.lhist_slots() as usize)?;
                MapValue::LHist(l)
            }
        };
        Ok(Some(v))
    }
}

/// `n` little-endian `u64` counters, trailing zeros dropped (histogram
/// equality and printing treat a shorter vector as zeros).
fn counters(b: &[u8], n: usize) -> Result<Vec<u64>, DecodeError> {
    let raw = slice(b, 0, n * 8, "histogram buckets")?;
    let mut out: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect();
    let len = out.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    out.truncate(len);
    Ok(out)
}

/// Put `bytes` into `out`, reusing its vector when `get` finds one.
fn refill(
    out: &mut Value,
    bytes: &[u8],
    make: fn(Vec<u8>) -> Value,
    get: fn(&mut Value) -> Option<&mut Vec<u8>>,
) {
    if let Some(v) = get(out) {
        v.clear();
        v.extend_from_slice(bytes);
    } else {
        *out = make(bytes.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: Type, offset: u32) -> Field {
        Field {
            name: name.into(),
            ty,
            offset,
        }
    }

    #[test]
    fn payload_fields_decode_in_place() {
        let fields = vec![
            field(
                "0",
                Type::Int {
                    bits: 32,
                    signed: true,
                },
                0,
            ),
            field("1", Type::Str { len: 8 }, 8),
            field("2", Type::Buf { len: 4 }, 16),
        ];
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-5i64).to_le_bytes());
        payload.extend_from_slice(b"bash\0zzz");
        payload.extend_from_slice(&3u32.to_le_bytes());
        payload.extend_from_slice(b"ab\x01\x02");
        let mut d = Decoder::with_kernel_symbols(KernelSymbols::default());
        let mut out = Vec::new();
        d.fields_into(&fields, &payload, &mut out, &mut NoStacks)
            .unwrap();
        assert_eq!(
            out,
            vec![
                Value::Signed {
                    value: -5,
                    bits: 32
                },
                Value::str("bash"),
                Value::Buf(b"ab\x01".to_vec()),
            ]
        );
        // The second decode reuses the string's buffer.
        let before = match &out[1] {
            Value::Str(s) => s.as_ptr(),
            _ => unreachable!("decoded a string above"),
        };
        payload[8..12].copy_from_slice(b"dash");
        d.fields_into(&fields, &payload, &mut out, &mut NoStacks)
            .unwrap();
        assert_eq!(out[1], Value::str("dash"));
        assert!(matches!(&out[1], Value::Str(s) if s.as_ptr() == before));
    }

    #[test]
    fn short_payload_is_an_error() {
        let fields = vec![field("0", Type::U64, 8)];
        let mut d = Decoder::new();
        let err = d
            .fields_into(&fields, &[0u8; 12], &mut Vec::new(), &mut NoStacks)
            .unwrap_err();
        assert!(matches!(err, DecodeError::Short { offset: 0, .. }), "{err}");
    }

    #[test]
    fn tuples_decode_their_fields() {
        let ty = Type::Tuple {
            fields: vec![
                field("0", Type::U64, 0),
                field("1", Type::Str { len: 4 }, 8),
            ],
            size: 16,
        };
        let mut bytes = 7u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"ab\0\0\0\0\0\0");
        let v = Decoder::new().value(&ty, &bytes, &mut NoStacks).unwrap();
        assert_eq!(v, Value::Tuple(vec![Value::u64(7), Value::str("ab")]));
    }

    fn pair(a: u64, b: u64) -> Vec<u8> {
        let mut v = a.to_le_bytes().to_vec();
        v.extend_from_slice(&b.to_le_bytes());
        v
    }

    #[test]
    fn per_cpu_min_ignores_unset_slots() {
        let mut d = Decoder::new();
        let spec = compile::MapValue::Min { signed: true };
        let set = pair((-3i64) as u64, 1);
        let unset = pair(0, 0);
        let other = pair(9, 1);
        let v = d
            .map_value(&spec, &[&unset, &set, &other], &mut NoStacks)
            .unwrap();
        assert_eq!(v, Some(MapValue::Min(-3)));
        let v = d
            .map_value(&spec, &[&unset, &unset], &mut NoStacks)
            .unwrap();
        assert_eq!(v, None);
    }

    #[test]
    fn per_cpu_counts_avgs_and_hists_merge() {
        let mut d = Decoder::new();
        let c = d
            .map_value(
                &compile::MapValue::Count,
                &[&3u64.to_le_bytes(), &4u64.to_le_bytes()],
                &mut NoStacks,
            )
            .unwrap();
        assert_eq!(c, Some(MapValue::Count(7)));
        let a = d
            .map_value(
                &compile::MapValue::Avg { signed: true },
                &[&pair(2, 10), &pair(1, 5)],
                &mut NoStacks,
            )
            .unwrap();
        assert_eq!(
            a,
            Some(MapValue::Avg {
                count: 3,
                total: 15
            })
        );
        let mut h1 = vec![0u8; compile::HIST_SLOTS as usize * 8];
        h1[8..16].copy_from_slice(&2u64.to_le_bytes());
        let mut h2 = vec![0u8; compile::HIST_SLOTS as usize * 8];
        h2[24..32].copy_from_slice(&1u64.to_le_bytes());
        let h = d
            .map_value(&compile::MapValue::Hist, &[&h1, &h2], &mut NoStacks)
            .unwrap();
        assert_eq!(
            h,
            Some(MapValue::Hist(Hist {
                buckets: vec![0, 2, 0, 1]
            }))
        );
        let spec = compile::MapValue::Lhist {
            min: 0,
            max: 10,
            step: 5,
        };
        let mut l = vec![0u8; 4 * 8];
        l[8..16].copy_from_slice(&6u64.to_le_bytes());
        let v = d.map_value(&spec, &[&l], &mut NoStacks).unwrap();
        let mut want = LHist::new(0, 10, 5);
        want.buckets = vec![0, 6];
        assert_eq!(v, Some(MapValue::LHist(want)));
    }

    struct OneStack;
    impl StackSource for OneStack {
        fn stack_frames(&mut self, id: u32, frames: &mut Vec<u64>) -> bool {
            frames.clear();
            if id != 4 {
                return false;
            }
            frames.extend_from_slice(&[0xffff_0010, 0xffff_0104, 0, 0]);
            true
        }
    }

    #[test]
    fn kernel_stacks_resolve_frames() {
        let syms = KernelSymbols::parse("ffff0000 T a\nffff0100 T b\n");
        let mut d = Decoder::with_kernel_symbols(syms);
        let v = d
            .value(&Type::Kstack, &4u64.to_le_bytes(), &mut OneStack)
            .unwrap();
        assert_eq!(
            v,
            Value::Stack(vec![
                Frame {
                    addr: 0xffff_0010,
                    symbol: Some(("a".into(), 0x10))
                },
                Frame {
                    addr: 0xffff_0104,
                    symbol: Some(("b".into(), 4))
                },
            ])
        );
        let missing = d
            .value(&Type::Kstack, &(-14i64).to_le_bytes(), &mut OneStack)
            .unwrap();
        assert_eq!(missing, Value::Stack(Vec::new()));
    }
}
