//! The subject common name of an X.509 certificate, the principal of a client that
//! authenticated with a TLS client certificate. rustls has verified the certificate (chain,
//! validity, signature) before this runs, so this only walks its DER to the subject:
//! `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
//! signature, issuer, validity, subject, ... }, ... }`.

/// OID 2.5.4.3, `id-at-commonName`, DER-encoded.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The first common name of the subject of the DER certificate `der`.
pub(super) fn common_name(der: &[u8]) -> Result<String, String> {
    subject_cn(der).unwrap_or_else(|| Err("the client certificate is not valid DER".into()))
}

fn subject_cn(der: &[u8]) -> Option<Result<String, String>> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(cert)? else {
        return None;
    };
    // [0] EXPLICIT version, absent in v1 certificates.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, mut rdns, _) = element(tbs)? else {
        return None;
    };
    while !rdns.is_empty() {
        let (SET, mut attributes, rest) = element(rdns)? else {
            return None;
        };
        rdns = rest;
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, rest) = element(attributes)? else {
                return None;
            };
            attributes = rest;
            let (OID, oid, value) = element(attribute)? else {
                return None;
            };
            if oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = element(value)?;
            // UTF8String, PrintableString, IA5String; others (BMPString, ...) are refused.
            if !matches!(tag, 0x0c | 0x13 | 0x16) {
                return Some(Err(format!(
                    "the certificate's common name has an unsupported string type (tag {tag:#x})"
                )));
            }
            return Some(match std::str::from_utf8(text) {
                Ok(cn) if !cn.is_empty() => Ok(cn.to_owned()),
                _ => Err("the certificate's common name is empty or not UTF-8".into()),
            });
        }
    }
    Some(Err("the certificate's subject has no common name".into()))
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    fn cert(dn: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn finds_the_subject_common_name() {
        let der = cert(&[
            (DnType::OrganizationName, "Fleet Inc"),
            (DnType::CommonName, "device-42"),
        ]);
        assert_eq!(common_name(&der).unwrap(), "device-42");
    }

    #[test]
    fn refuses_a_subject_without_common_name_and_broken_der() {
        let der = cert(&[(DnType::OrganizationName, "Fleet Inc")]);
        assert!(common_name(&der).unwrap_err().contains("no common name"));
        for cut in [0, 1, 10, der.len() / 2] {
            assert!(common_name(&der[..cut]).is_err());
        }
    }
}
