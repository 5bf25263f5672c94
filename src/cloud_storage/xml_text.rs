//! Reading the few fields this server needs from AWS's XML answers (S3's
//! listings and errors, STS's credentials): machine-written, unnested where
//! it matters, so finding an element by name and unescaping its text is
//! enough, without an XML parser.

/// The raw text of each `<name>...</name>` element of `xml`, in order.
pub fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let inner = &rest[start + open.len()..];
        let Some(end) = inner.find(&close) else { break };
        found.push(&inner[..end]);
        rest = &inner[end + close.len()..];
    }
    found
}

/// The unescaped text of the first `<name>` element of `xml`.
pub fn element(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).first().map(|text| unescape(text))
}

/// XML's five named entities and numeric character references.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        let entity = &after[..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(character) => {
                out.push(character);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_unescaped() {
        assert_eq!(unescape("a&lt;b&gt;&amp;&#65;&#x42;&apos;&quot;"), "a<b>&AB'\"");
        assert_eq!(unescape("no entity & here"), "no entity & here");
        assert_eq!(unescape("&unknown;x"), "&unknown;x");
    }
}
