// Images, PNG encoding and the heatmap (trainer/png.h).
#include "trainer/png.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace sl::trainer {
namespace {

// 3x5 glyphs, one row per 3-bit group, top row first (bit 2 = left column).
struct Glyph {
  char c;
  uint8_t rows[5];
};
constexpr Glyph kFont[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'%', {5, 1, 2, 4, 5}},
};

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_u32(out, uint32_t(data.size()));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, out.data() + start, uInt(out.size() - start));
  put_u32(out, uint32_t(crc));
}

}  // namespace

Image::Image(int width, int height, Rgb bg) : w_(width), h_(height) {
  SL_CHECK(width > 0 && height > 0) << "Image: " << width << "x" << height;
  rgb_.resize(size_t(w_) * size_t(h_) * 3);
  fill(0, 0, w_, h_, bg);
}

Rgb Image::at(int x, int y) const {
  const uint8_t* p = &rgb_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
  return {p[0], p[1], p[2]};
}

void Image::fill(int x, int y, int w, int h, Rgb c) {
  for (int yy = std::max(y, 0); yy < std::min(y + h, h_); ++yy)
    for (int xx = std::max(x, 0); xx < std::min(x + w, w_); ++xx) {
      uint8_t* p = &rgb_[(size_t(yy) * size_t(w_) + size_t(xx)) * 3];
      p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
}

int Image::text(int x, int y, const std::string& s, Rgb c, int scale) {
  for (size_t i = 0; i < s.size(); ++i) {
    for (const Glyph& g : kFont) {
      if (g.c != s[i]) continue;
      for (int row = 0; row < 5; ++row)
        for (int col = 0; col < 3; ++col)
          if (g.rows[row] & (4 >> col))
            fill(x + (int(i) * 4 + col) * scale, y + row * scale, scale, scale, c);
    }
  }
  return text_width(s, scale);
}

std::vector<uint8_t> encode_png(const Image& img) {
  const int W = img.width(), H = img.height();
  std::vector<uint8_t> raw;
  raw.reserve(size_t(H) * (size_t(W) * 3 + 1));
  for (int y = 0; y < H; ++y) {
    raw.push_back(0);
    auto row = img.rgb().begin() + ptrdiff_t(y) * W * 3;
    raw.insert(raw.end(), row, row + ptrdiff_t(W) * 3);
  }
  uLongf zlen = compressBound(uLong(raw.size()));
  std::vector<uint8_t> z(zlen);
  int rc = compress2(z.data(), &zlen, raw.data(), uLong(raw.size()), Z_BEST_COMPRESSION);
  SL_CHECK(rc == Z_OK) << "encode_png: zlib compress2 failed with " << rc;
  z.resize(zlen);

  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_u32(ihdr, uint32_t(W));
  put_u32(ihdr, uint32_t(H));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8 bits, truecolour, deflate, filter 0, no interlace
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", {});
  return out;
}

Status write_png(const std::string& path, const Image& img) {
  std::vector<uint8_t> bytes = encode_png(img);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status::IoError(path + ": cannot open for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  f.close();
  if (!f) return Status::IoError(path + ": write failed");
  return Status::Ok();
}

Rgb colour_scale(double v) {
  if (std::isnan(v)) return {160, 160, 160};
  static constexpr double kStops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  double t = std::clamp(v, 0.0, 1.0) * 4.0;
  int i = std::min(int(t), 3);
  double f = t - i;
  auto mix = [&](int ch) {
    return uint8_t(std::lround(kStops[i][ch] + f * (kStops[i + 1][ch] - kStops[i][ch])));
  };
  return {mix(0), mix(1), mix(2)};
}

Image heatmap(const std::vector<std::vector<double>>& values,
              const std::vector<std::string>& row_labels,
              const std::vector<std::string>& col_labels) {
  const int rows = int(values.size()), cols = rows ? int(values[0].size()) : 0;
  SL_CHECK(rows > 0 && cols > 0 && int(row_labels.size()) == rows && int(col_labels.size()) == cols)
      << "heatmap: " << rows << " rows, " << cols << " columns, " << row_labels.size()
      << " row labels, " << col_labels.size() << " column labels";
  constexpr int kScale = 2, kCellH = 28, kPad = 8, kGlyphH = 5 * kScale;
  int label_w = 0, cell_w = Image::text_width("0.00", kScale) + 2 * kPad;
  for (const std::string& s : row_labels) label_w = std::max(label_w, Image::text_width(s, kScale));
  for (const std::string& s : col_labels)
    cell_w = std::max(cell_w, Image::text_width(s, kScale) + kPad);
  const int x0 = kPad + label_w + kPad, y0 = kPad;
  const int bar_x = x0 + cols * cell_w + 2 * kPad, bar_w = 12, bar_h = rows * kCellH;
  const int W = bar_x + bar_w + kPad + Image::text_width("1", kScale) + kPad;
  const int H = y0 + rows * kCellH + kPad + kGlyphH + kPad;
  Image img(W, H);
  const Rgb black{0, 0, 0}, white{255, 255, 255};
  for (int r = 0; r < rows; ++r) {
    SL_CHECK(int(values[size_t(r)].size()) == cols) << "heatmap: row " << r << " is ragged";
    img.text(kPad + label_w - Image::text_width(row_labels[size_t(r)], kScale),
             y0 + r * kCellH + (kCellH - kGlyphH) / 2, row_labels[size_t(r)], black, kScale);
    for (int c = 0; c < cols; ++c) {
      double v = values[size_t(r)][size_t(c)];
      Rgb col = colour_scale(v);
      img.fill(x0 + c * cell_w, y0 + r * kCellH, cell_w, kCellH, col);
      if (std::isnan(v)) continue;
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%.2f", v);
      const bool dark = 0.299 * col.r + 0.587 * col.g + 0.114 * col.b < 128;
      img.text(x0 + c * cell_w + (cell_w - Image::text_width(buf, kScale)) / 2,
               y0 + r * kCellH + (kCellH - kGlyphH) / 2, buf, dark ? white : black, kScale);
    }
  }
  for (int c = 0; c < cols; ++c)
    img.text(x0 + c * cell_w + (cell_w - Image::text_width(col_labels[size_t(c)], kScale)) / 2,
             y0 + rows * kCellH + kPad, col_labels[size_t(c)], black, kScale);
  for (int y = 0; y < bar_h; ++y)
    img.fill(bar_x, y0 + y, bar_w, 1, colour_scale(1.0 - double(y) / double(bar_h - 1)));
  img.text(bar_x + bar_w + kPad / 2, y0, "1", black, kScale);
  img.text(bar_x + bar_w + kPad / 2, y0 + bar_h - kGlyphH, "0", black, kScale);
  return img;
}

}  // namespace sl::trainer
