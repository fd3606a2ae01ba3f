//! `--token-auth-file`: a CSV of `token,user,uid[,"group1,group2"]`, as upstream's tokenfile
//! authenticator reads it.

use crate::UserInfo;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start_matches('\u{feff}');
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            if fields.len() < 3 {
                return Err(format!("token file is invalid: line {}: expected at least 3 columns", n + 1));
            }
            let groups = fields
                .get(3)
                .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect())
                .unwrap_or_default();
            let user = UserInfo { username: fields[1].clone(), uid: fields[2].clone(), groups, ..Default::default() };
            // A repeated token: the last line wins, as upstream.
            tokens.insert(fields[0].clone(), user);
        }
        Ok(TokenFile { tokens })
    }

    pub fn load(path: &std::path::Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        TokenFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// One CSV record with RFC 4180 quoting.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => quoted = true,
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            c => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_format() {
        let f = TokenFile::parse("abc,alice,1001,\"dev,ops\"\nxyz,bob,1002\n").unwrap();
        let a = f.authenticate("abc").unwrap();
        assert_eq!((a.username.as_str(), a.uid.as_str()), ("alice", "1001"));
        assert_eq!(a.groups, ["dev", "ops"]);
        assert!(f.authenticate("xyz").unwrap().groups.is_empty());
        assert!(f.authenticate("nope").is_none());
        assert!(TokenFile::parse("only,two\n").is_err());
    }
}
