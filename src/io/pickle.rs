//! A pickle reader that executes nothing: the opcodes `torch.save` emits (protocols 2–5) build a
//! plain value tree, and the only callables it knows are an allow-list of data constructors
//! (the torch tensor-rebuild functions, storage types, `collections.OrderedDict`,
//! `argparse.Namespace`, `builtins.set`/`frozenset`, `_codecs.encode`). Any other global, and any
//! opcode outside the list, is refused with an error naming it.
//!
//! Untrusted input is bounded: memoized values are shared (`Rc`), never copied, so a pickle that
//! reuses one object at every level costs one node per opcode; the opcode count, stack depth and
//! container sizes have budgets.

use std::cell::RefCell;
use std::rc::Rc;

/// Reader errors: what went wrong and at which byte of the pickle stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Byte offset in the pickle stream.
    pub at: usize,
    /// What went wrong there.
    pub what: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pickle byte {})", self.what, self.at)
    }
}

/// Element types of torch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    /// `torch.DoubleStorage`
    F64,
    /// `torch.FloatStorage`
    F32,
    /// `torch.HalfStorage`
    F16,
    /// `torch.BFloat16Storage`
    Bf16,
    /// `torch.LongStorage`
    I64,
    /// `torch.IntStorage`
    I32,
    /// `torch.ShortStorage`
    I16,
    /// `torch.CharStorage`
    I8,
    /// `torch.ByteStorage`
    U8,
    /// `torch.BoolStorage`
    Bool,
}

impl StorageDtype {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::Bf16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::Bf16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// The safetensors-style name (`F32`, `I64`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// A storage named by a persistent id: `('storage', <type>, key, location, numel)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// The storage's key: its file `data/<key>` in the zip.
    pub key: String,
    /// Element type.
    pub dtype: StorageDtype,
    /// Elements in the storage.
    pub numel: u64,
}

/// A tensor view into a storage (`_rebuild_tensor_v2`), offsets and strides in elements.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage the tensor views.
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: u64,
    /// Shape.
    pub shape: Vec<u64>,
    /// Strides, in elements.
    pub stride: Vec<u64>,
}

/// The allow-listed callables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `collections.OrderedDict`
    OrderedDict,
    /// `argparse.Namespace` (read as a dict of its attributes)
    Namespace,
    /// `builtins.set`
    Set,
    /// `_codecs.encode` (how protocol 2 writes bytes)
    CodecsEncode,
    /// A `torch.*Storage` type.
    Storage(StorageDtype),
}

fn allowed(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("argparse", "Namespace") => Global::Namespace,
        ("builtins" | "__builtin__", "set" | "frozenset") => Global::Set,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", storage) => Global::Storage(StorageDtype::from_storage_class(storage)?),
        _ => return None,
    })
}

/// A pickled value. Containers are shared, as the pickle's memo shares them.
#[derive(Clone, Debug)]
pub enum Value {
    /// `None`
    None,
    /// `True`/`False`
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(Rc<str>),
    /// Bytes.
    Bytes(Rc<[u8]>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A list (shared: the memo may hold it twice).
    List(Rc<RefCell<Vec<Value>>>),
    /// Insertion-ordered (dict, OrderedDict).
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `argparse.Namespace`: its attributes.
    Namespace(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A tensor rebuilt by reference (data stays in the zip).
    Tensor(Rc<TensorRef>),
    /// A storage reference.
    Storage(Rc<StorageRef>),
    /// An allow-listed callable, before it is applied.
    Global(Global),
    /// The stack mark (never in a finished value).
    Mark,
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `(key, value)` pairs of a dict, OrderedDict or Namespace.
    pub fn items(&self) -> Option<Vec<(Value, Value)>> {
        match self {
            Value::Dict(d) | Value::Namespace(d) => Some(d.borrow().clone()),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict or Namespace.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.items()?.into_iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Namespace(_) => "argparse.Namespace",
            Value::Tensor(_) => "tensor",
            Value::Storage(_) => "storage",
            Value::Global(_) => "global",
            Value::Mark => "mark",
        }
    }

    /// Plain-data rendering (JSON-like) for metadata and messages; shared or cyclic containers
    /// are cut off at `depth` levels.
    pub fn render(&self, depth: usize) -> String {
        let seq = |xs: &[Value], open: &str, close: &str| -> String {
            if depth == 0 {
                return "…".into();
            }
            let inner: Vec<String> = xs.iter().map(|x| x.render(depth - 1)).collect();
            format!("{open}{}{close}", inner.join(", "))
        };
        match self {
            Value::None => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) if f.is_finite() => format!("{f:?}"),
            Value::Float(f) => format!("\"{f}\""),
            Value::Str(s) => format!("{:?}", s.as_ref()),
            Value::Bytes(b) => format!("\"<{} bytes>\"", b.len()),
            Value::Tuple(t) => seq(t, "[", "]"),
            Value::List(l) => seq(&l.borrow(), "[", "]"),
            Value::Dict(d) | Value::Namespace(d) => {
                if depth == 0 {
                    return "…".into();
                }
                let inner: Vec<String> = d
                    .borrow()
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}: {}",
                            k.as_str().map(|s| format!("{s:?}")).unwrap_or_else(|| format!("\"{}\"", k.render(0))),
                            v.render(depth - 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            Value::Tensor(t) => format!("\"<tensor {} {:?}>\"", t.storage.dtype.name(), t.shape),
            Value::Storage(s) => format!("\"<storage {}>\"", s.key),
            Value::Global(g) => format!("\"<{g:?}>\""),
            Value::Mark => "\"<mark>\"".into(),
        }
    }
}

/// Budgets for untrusted pickles.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Opcodes executed at most.
    pub max_ops: usize,
    /// Stack depth at most.
    pub max_stack: usize,
    /// Items in one container at most.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A full RLIPv2 checkpoint's data.pkl (model + AdamW state + args) is ≈ 60k opcodes.
        Limits { max_ops: 20_000_000, max_stack: 1_000_000, max_items: 10_000_000 }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
    limits: Limits,
    items: usize,
}

type R<T> = std::result::Result<T, PickleError>;

impl<'a> Machine<'a> {
    fn err<T>(&self, what: impl Into<String>) -> R<T> {
        Err(PickleError { at: self.pos, what: what.into() })
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return self.err(format!("truncated: needs {n} more bytes, {} left", self.data.len() - self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len_u64(&mut self) -> R<usize> {
        let n = self.u64()?;
        usize::try_from(n).or_else(|_| self.err(format!("length {n} too large")))
    }

    fn line(&mut self) -> R<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("truncated: missing end of line");
        };
        let s = std::str::from_utf8(&rest[..end]).or_else(|_| self.err("line is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> R<Value> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).or_else(|_| self.err("string is not UTF-8"))?;
        Ok(Value::Str(s.into()))
    }

    fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() >= self.limits.max_stack {
            return self.err(format!("stack deeper than {}", self.limits.max_stack));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> R<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => self.err("stack underflow"),
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self) -> R<&mut Value> {
        match self.stack.last_mut() {
            Some(Value::Mark) | None => Err(PickleError { at: self.pos, what: "stack underflow".into() }),
            Some(v) => Ok(v),
        }
    }

    /// Values above the last mark; the mark is removed.
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let Some(m) = self.marks.pop() else { return self.err("no mark on the stack") };
        let items = self.stack.split_off(m + 1);
        self.stack.pop(); // the mark
        Ok(items)
    }

    fn count(&mut self, n: usize) -> R<()> {
        self.items += n;
        if self.items > self.limits.max_items {
            return self.err(format!("more than {} container items", self.limits.max_items));
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> R<()> {
        match self.memo.get(&key) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => self.err(format!("memo key {key} not defined")),
        }
    }

    fn memo_put(&mut self, key: u32) -> R<()> {
        let v = match self.stack.last() {
            Some(Value::Mark) | None => return self.err("memo put of an empty stack"),
            Some(v) => v.clone(),
        };
        if self.memo.len() >= self.limits.max_items {
            return self.err("memo too large");
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn set_items(&mut self, target: &Value, kv: Vec<Value>) -> R<()> {
        if !kv.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of values");
        }
        self.count(kv.len() / 2)?;
        match target {
            Value::Dict(d) | Value::Namespace(d) => {
                let mut d = d.borrow_mut();
                let mut it = kv.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            other => self.err(format!("SETITEM on a {}", other.kind())),
        }
    }

    fn append(&mut self, target: &Value, xs: Vec<Value>) -> R<()> {
        self.count(xs.len())?;
        match target {
            Value::List(l) => {
                l.borrow_mut().extend(xs);
                Ok(())
            }
            other => self.err(format!("APPEND on a {}", other.kind())),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> R<()> {
        match allowed(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None => self.err(format!("refused global `{module}.{name}`: not in the allow-list of data constructors (a checkpoint needs only torch tensor/storage rebuilds, OrderedDict and argparse.Namespace)")),
        }
    }

    fn int_arg(&self, v: &Value, what: &str) -> R<u64> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            other => self.err(format!("{what}: expected a non-negative int, got {}", other.render(1))),
        }
    }

    fn ints(&self, v: &Value, what: &str) -> R<Vec<u64>> {
        match v {
            Value::Tuple(t) => t.iter().map(|x| self.int_arg(x, what)).collect(),
            other => self.err(format!("{what}: expected a tuple of ints, got a {}", other.kind())),
        }
    }

    /// Applies an allow-listed callable to its argument tuple.
    fn reduce(&mut self, f: Value, args: Value) -> R<Value> {
        let Value::Global(g) = f else {
            return self.err(format!("REDUCE of a {}, not an allow-listed callable", f.kind()));
        };
        let Value::Tuple(args) = args else { return self.err("REDUCE arguments are not a tuple") };
        match g {
            Global::RebuildTensorV2 => {
                if args.len() < 4 {
                    return self.err("_rebuild_tensor_v2 needs (storage, offset, size, stride, …)");
                }
                let Value::Storage(s) = &args[0] else {
                    return self
                        .err(format!("_rebuild_tensor_v2: first argument is a {}, not a storage", args[0].kind()));
                };
                let t = TensorRef {
                    storage: (**s).clone(),
                    offset: self.int_arg(&args[1], "storage offset")?,
                    shape: self.ints(&args[2], "size")?,
                    stride: self.ints(&args[3], "stride")?,
                };
                if t.shape.len() != t.stride.len() {
                    return self.err(format!("tensor size {:?} and stride {:?} differ in rank", t.shape, t.stride));
                }
                Ok(Value::Tensor(Rc::new(t)))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => self.err("_rebuild_parameter: first argument is not a tensor"),
            },
            Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Default::default())),
            Global::Set => {
                let items = match args.first() {
                    Some(Value::List(l)) => l.borrow().clone(),
                    Some(Value::Tuple(t)) => t.to_vec(),
                    None => Vec::new(),
                    Some(other) => return self.err(format!("set() of a {}", other.kind())),
                };
                Ok(Value::List(Rc::new(RefCell::new(items))))
            }
            Global::CodecsEncode => match (args.first(), args.get(1).and_then(Value::as_str)) {
                (Some(Value::Str(s)), Some("latin1")) => {
                    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                    bytes.map(|b| Value::Bytes(b.into())).map_or_else(|| self.err("_codecs.encode: not latin-1"), Ok)
                }
                _ => self.err("_codecs.encode: only (str, 'latin1') is read"),
            },
            other => self.err(format!("{other:?} cannot be called with {} arguments", args.len())),
        }
    }

    fn persistent(&mut self, pid: Value) -> R<Value> {
        let Value::Tuple(t) = &pid else { return self.err(format!("persistent id is a {}, not a tuple", pid.kind())) };
        match (t.first().and_then(Value::as_str), t.get(1), t.get(2).and_then(Value::as_str), t.get(4)) {
            (Some("storage"), Some(Value::Global(Global::Storage(dtype))), Some(key), Some(numel)) => {
                let numel = self.int_arg(numel, "storage numel")?;
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return self.err(format!("storage key {key:?} is not a plain name"));
                }
                Ok(Value::Storage(Rc::new(StorageRef { key: key.to_string(), dtype: *dtype, numel })))
            }
            _ => self.err(format!("persistent id {} is not a torch storage reference", pid.render(2))),
        }
    }

    fn run(&mut self) -> R<Value> {
        let mut ops = 0usize;
        loop {
            ops += 1;
            if ops > self.limits.max_ops {
                return self.err(format!("more than {} opcodes", self.limits.max_ops));
            }
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let v = self.u8()?; // PROTO
                    if v > 5 {
                        return self.err(format!("pickle protocol {v} is newer than 5"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: framing only
                }
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => {
                    self.marks.push(self.stack.len());
                    self.push(Value::Mark)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    if n > 8 {
                        return self.err(format!("integer of {n} bytes does not fit 64 bits"));
                    }
                    let b = self.take(n)?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                    buf[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                b'T' | b'U' => {
                    // BINSTRING / SHORT_BINSTRING (Python 2 str): read as latin-1 text
                    let n = if op == b'T' { self.u32()? as usize } else { self.u8()? as usize };
                    let s: String = self.take(n)?.iter().map(|&b| b as char).collect();
                    self.push(Value::Str(s.into()))?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.into()))?
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.count(items.len())?;
                    self.push(Value::Tuple(Rc::new(items)))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)))?
                }
                b']' => self.push(Value::List(Default::default()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.count(items.len())?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?
                }
                b'a' => {
                    let x = self.pop()?;
                    let target = self.top()?.clone();
                    self.append(&target, vec![x])?
                }
                b'e' => {
                    let xs = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.append(&target, xs)?
                }
                b'}' => self.push(Value::Dict(Default::default()))?,
                b'd' => {
                    let kv = self.pop_mark()?;
                    let d = Value::Dict(Default::default());
                    self.set_items(&d, kv)?;
                    self.push(d)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, vec![k, v])?
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, kv)?
                }
                0x8f => self.push(Value::List(Default::default()))?, // EMPTY_SET
                0x90 => {
                    let xs = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.append(&target, xs)?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.count(items.len())?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.global(&module, &name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => {
                            let (m, n) = (m.to_string(), n.to_string());
                            self.global(&m, &n)?
                        }
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.push(v)?
                }
                0x81 | 0x92 => {
                    // NEWOBJ / NEWOBJ_EX: only argparse.Namespace (its state comes with BUILD)
                    if op == 0x92 {
                        self.pop()?; // kwargs
                    }
                    let _args = self.pop()?;
                    match self.pop()? {
                        Value::Global(Global::Namespace) => self.push(Value::Namespace(Default::default()))?,
                        Value::Global(Global::OrderedDict) => self.push(Value::Dict(Default::default()))?,
                        other => return self.err(format!("NEWOBJ of a {} is not allowed", other.render(0))),
                    }
                }
                b'b' => {
                    // BUILD: attribute state for a Namespace; OrderedDict's `_metadata` and a
                    // tensor's state are read and dropped
                    let state = self.pop()?;
                    match (self.top()?.clone(), state) {
                        (Value::Namespace(ns), state) => {
                            let items = state.items().or_else(|| match &state {
                                Value::Tuple(t) => t.first().and_then(Value::items),
                                _ => None,
                            });
                            let Some(items) = items else { return self.err("Namespace state is not a dict") };
                            self.count(items.len())?;
                            ns.borrow_mut().extend(items);
                        }
                        (Value::Dict(_) | Value::Tensor(_), _) => {}
                        (other, _) => return self.err(format!("BUILD on a {}", other.kind())),
                    }
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'p' => {
                    let k = self.line()?.parse::<u32>().or_else(|_| self.err("PUT key is not a number"))?;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'g' => {
                    let k = self.line()?.parse::<u32>().or_else(|_| self.err("GET key is not a number"))?;
                    self.memo_get(k)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.push(v)?
                }
                other => {
                    self.pos = at;
                    return self.err(format!("opcode 0x{other:02x} ({:?}) is not in the allow-list", other as char));
                }
            }
        }
    }
}

/// Reads one pickle from `data` within `limits`.
pub fn read(data: &[u8], limits: Limits) -> Result<Value, PickleError> {
    let mut m =
        Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: Default::default(), limits, items: 0 };
    m.run()
}
