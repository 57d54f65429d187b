//! The subset of STON that Pharo's composed images use (§6): one struct per
//! file, `Name {`, then `#field : integer` lines separated by commas, then
//! `}`. Either line ending is accepted.

/// A parsed STON struct: its name and its fields in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StonStruct {
    /// The struct name before `{`.
    pub name: String,
    /// The fields, name and value, in file order.
    pub fields: Vec<(String, i64)>,
}

impl StonStruct {
    /// The value of `field`, or 0 when the file does not have it (as the
    /// Pharo VM reads a missing field).
    pub fn get(&self, field: &str) -> i64 {
        self.fields
            .iter()
            .find(|(n, _)| n == field)
            .map_or(0, |&(_, v)| v)
    }
}

/// What is wrong with a STON file, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {what}")]
pub struct StonError {
    /// The file, for the message.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// What is wrong there.
    pub what: String,
}

/// Longest STON text accepted. The files the VMs write are a few hundred
/// bytes; a reader can stop reading a file after this many bytes plus one.
pub const MAX_STON_BYTES: u64 = 64 << 10;

/// Parses one struct from `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<StonStruct, StonError> {
    let err = |line: usize, what: String| StonError {
        file: file.to_string(),
        line,
        what,
    };
    if text.len() as u64 > MAX_STON_BYTES {
        return Err(err(
            1,
            format!(
                "{} bytes or more, longer than any struct of a composed image ({MAX_STON_BYTES} bytes at most)",
                text.len()
            ),
        ));
    }
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let (n, head) = lines
        .next()
        .ok_or_else(|| err(1, "empty file: expected `StructName {`".into()))?;
    let name = head
        .strip_suffix('{')
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| err(n, format!("expected `StructName {{`, found `{head}`")))?
        .to_string();
    let mut fields: Vec<(String, i64)> = Vec::new();
    let mut closed = false;
    let mut expect_more = true;
    for (n, line) in lines.by_ref() {
        if line == "}" {
            if !expect_more || fields.is_empty() {
                closed = true;
                break;
            }
            return Err(err(n, "a `,` after the last field".into()));
        }
        if !expect_more {
            return Err(err(n, format!("expected `,` before `{line}`")));
        }
        let body = line.strip_suffix(',');
        expect_more = body.is_some();
        let body = body.unwrap_or(line).trim();
        let (fname, value) = body
            .strip_prefix('#')
            .and_then(|b| b.split_once(':'))
            .ok_or_else(|| err(n, format!("expected `#field : integer`, found `{line}`")))?;
        let fname = fname.trim();
        if fname.is_empty() || !fname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(n, format!("bad field name `{fname}`")));
        }
        let value: i64 = value.trim().parse().map_err(|_| {
            err(
                n,
                format!("field {fname}: `{}` is not a 64-bit integer", value.trim()),
            )
        })?;
        if fields.iter().any(|(f, _)| f == fname) {
            return Err(err(n, format!("field {fname} appears twice")));
        }
        fields.push((fname.to_string(), value));
    }
    if !closed {
        return Err(err(
            text.lines().count().max(1),
            "missing closing `}`".into(),
        ));
    }
    if let Some((n, extra)) = lines.next() {
        return Err(err(
            n,
            format!("unexpected `{extra}` after the closing `}}`"),
        ));
    }
    Ok(StonStruct { name, fields })
}

/// Writes a struct exactly as the Pharo VM's composed-image writer does (§6):
/// `Name {\n`, the fields as `\t#name : value` joined by `,\n`, then `\n}`
/// with no final newline.
pub fn write(name: &str, fields: &[(&str, i64)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(f, v)| format!("\t#{f} : {v}"))
        .collect();
    format!("{name} {{\n{}\n}}", body.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_in_either_line_ending() {
        let text = write(
            "ComposedMetadataStruct",
            &[("startAddress", 1 << 40), ("dataSize", -5)],
        );
        assert_eq!(
            text,
            "ComposedMetadataStruct {\n\t#startAddress : 1099511627776,\n\t#dataSize : -5\n}"
        );
        for t in [text.clone(), text.replace('\n', "\r\n")] {
            let s = parse(&t, "seg0.ston").unwrap();
            assert_eq!(s.name, "ComposedMetadataStruct");
            assert_eq!(s.get("startAddress"), 1 << 40);
            assert_eq!(s.get("dataSize"), -5);
            assert_eq!(s.get("missing"), 0);
        }
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("S {\n\t#a : 1,\n\t#b : x\n}", "header.ston").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("header.ston", 3));
        assert!(e.to_string().contains("not a 64-bit integer"), "{e}");
        let e = parse("S {\n\t#a : 1\n\t#b : 2\n}", "h").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("S {\n\t#a : 1", "h").unwrap_err();
        assert!(e.what.contains("closing"), "{e}");
        let e = parse("", "h").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("S {\n\t#a : 1,\n}", "h").unwrap_err();
        assert!(e.what.contains("after the last field"), "{e}");
        let e = parse("S {\n\t#a : 1\n}\nmore", "h").unwrap_err();
        assert_eq!(e.line, 4);
        let e = parse("S {\n\t#a : 99999999999999999999\n}", "h").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn text_longer_than_any_struct_is_refused() {
        let fields: Vec<(String, i64)> = (0..6000).map(|i| (format!("f{i}"), i)).collect();
        let refs: Vec<(&str, i64)> = fields.iter().map(|(f, v)| (f.as_str(), *v)).collect();
        let text = write("S", &refs);
        assert!(text.len() as u64 > MAX_STON_BYTES);
        let e = parse(&text, "h").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.what.contains("longer than any struct"), "{e}");
        let fits = write("S", &refs[..1000]);
        assert_eq!(parse(&fits, "h").unwrap().fields.len(), 1000);
    }
}
