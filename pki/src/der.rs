//! The few DER operations the PKI needs beyond rcgen: reading TLVs and re-encoding a certificate's
//! subject (rcgen keeps one value per attribute type; Kubernetes groups need several `O` values).

/// Reads one TLV at the start of `der`: (tag, content, rest).
pub fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Every TLV of a sequence's content, each as its raw bytes (header included).
pub fn elements(mut content: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (_, _, rest) = tlv(content)?;
        out.push(&content[..content.len() - rest.len()]);
        content = rest;
    }
    Some(out)
}

pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

const OID_ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];

fn atv(oid: &[u8], value: &str) -> Vec<u8> {
    let mut atv = oid.to_vec();
    atv.extend(encode(0x0c, value.as_bytes())); // UTF8String
    encode(0x30, &atv)
}

/// One RDN holding every value (a DER SET OF, elements sorted by their encoding).
fn rdn(oid: &[u8], values: &[&str]) -> Vec<u8> {
    let mut atvs: Vec<Vec<u8>> = values.iter().map(|v| atv(oid, v)).collect();
    atvs.sort();
    encode(0x31, &atvs.concat())
}

/// A Name as Go's `pkix.Name` writes it: the organizations in one multi-valued RDN, then the common name.
pub fn subject_name(organizations: &[String], common_name: &str) -> Vec<u8> {
    let orgs: Vec<&str> = organizations.iter().map(String::as_str).collect();
    let mut seq = rdn(OID_ORGANIZATION, &orgs);
    seq.extend(rdn(OID_COMMON_NAME, &[common_name]));
    encode(0x30, &seq)
}

/// Replaces the subject of a signed certificate and signs it again with `sign` (the issuer's key, same
/// algorithm). Returns `None` when `cert` is not a well-formed certificate.
pub fn replace_subject(cert: &[u8], subject: &[u8], sign: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let (0x30, body, _) = tlv(cert)? else { return None };
    let parts = elements(body)?;
    let [tbs, alg, _sig] = parts.as_slice() else { return None };
    let (0x30, tbs_body, _) = tlv(tbs)? else { return None };
    let mut fields = elements(tbs_body)?;
    let subject_at = if fields.first()?.first() == Some(&0xa0) { 5 } else { 4 };
    if fields.len() <= subject_at {
        return None;
    }
    fields[subject_at] = subject;
    let new_tbs = encode(0x30, &fields.concat());
    let signature = sign(&new_tbs)?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut out = new_tbs;
    out.extend_from_slice(alg);
    out.extend(encode(0x03, &bits));
    Some(encode(0x30, &out))
}
