//! Renders a QR payload as a PNG: the `qrcode` crate computes the modules; the PNG is written here with stored
//! (uncompressed) deflate blocks, which keeps an image dependency out of the edge for a 300-pixel picture.

use qrcode::{Color, QrCode};

/// Pixels per QR module, and the quiet zone around the code in modules.
const SCALE: usize = 8;
const QUIET: usize = 4;

pub fn render(payload: &str) -> Result<Vec<u8>, qrcode::types::QrError> {
    let code = QrCode::new(payload.as_bytes())?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    // One filter byte (0: none) per row, then one grey byte per pixel.
    let mut raw = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        raw.push(0);
        let my = (y / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
        for x in 0..side {
            let mx = (x / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
            let dark = matches!((mx, my), (Some(mx), Some(my)) if colors[my * modules + mx] == Color::Dark);
            raw.push(if dark { 0 } else { 255 });
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no filter method, no interlace
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    Ok(png)
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    png.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A zlib stream of stored blocks (RFC 1950/1951), each at most 65535 bytes.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_png_with_a_valid_signature_and_size() {
        let png = super::render("2@sandbox,example").expect("render");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let width = u32::from_be_bytes(png[16..20].try_into().expect("width"));
        assert!(width >= (21 + 8) * 8, "at least a version-1 code with its quiet zone");
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND chunk with its fixed CRC");
    }
}
