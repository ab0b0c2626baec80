//! Input text quoted inside a message (a refusal's reason, a log line): control characters
//! (NUL among them) escaped and the length bounded, so that the message is always storable and
//! loggable. A module of its own, with no dependencies, for validation and the wire formats.

/// `text` with control characters escaped, at most `max_chars` characters (then `…`).
pub fn quote_bounded(text: &str, max_chars: usize) -> String {
    let mut quoted = String::with_capacity(text.len().min(max_chars) + 3);
    for (index, c) in text.chars().enumerate() {
        if index == max_chars {
            quoted.push('…');
            break;
        }
        if c.is_control() {
            quoted.extend(c.escape_default());
        } else {
            quoted.push(c);
        }
    }
    quoted
}
