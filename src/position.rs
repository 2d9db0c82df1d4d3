//! `file:line:col` of a byte offset, for errors in the TOML files both the
//! gateway (`config/`) and the person's CLI (`cli/settings`) read; a
//! module of its own so that `cli/` needs nothing from the server config.

use std::path::Path;

/// `file:line:col` for a byte offset into `text`.
pub fn position(path: &Path, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    format!("{}:{line}:{col}", path.display())
}
