// A small RGB image, PNG output (zlib for the deflate stream and the CRCs) and the heatmap that
// `superlinear eval` draws for the NIAH grid.
//
// The PNG is 8-bit truecolour, one IDAT chunk, every scanline with filter 0 (none): the simplest
// file every reader accepts; heatmaps are small, so the better filters would save nothing that
// matters. Text is drawn with a built-in 3x5 pixel font of digits, '.', '-' and '%' only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.h"

namespace sl::trainer {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
};

class Image {
 public:
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return w_; }
  int height() const { return h_; }
  Rgb at(int x, int y) const;
  // Pixels outside the image are clipped.
  void fill(int x, int y, int w, int h, Rgb c);
  // Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide;
  // characters the font lacks are left blank. Returns the width drawn.
  int text(int x, int y, const std::string& text, Rgb c, int scale = 1);
  static int text_width(const std::string& text, int scale = 1) {
    return int(text.size()) * 4 * scale;
  }
  const std::vector<uint8_t>& rgb() const { return rgb_; }  // row-major, 3 bytes a pixel

 private:
  int w_, h_;
  std::vector<uint8_t> rgb_;
};

// The PNG file's bytes.
std::vector<uint8_t> encode_png(const Image& img);
// Writes encode_png(img) to path. IoError naming the path on failure.
Status write_png(const std::string& path, const Image& img);

// Colour of v in [0, 1] on a perceptually ordered dark-blue -> green -> yellow scale (clamped);
// NaN is grey.
Rgb colour_scale(double v);

// values[r][c] in [0, 1] (NaN: no data) as a grid of coloured cells with its value printed in
// each, row labels on the left, column labels below, and a 0..1 colour bar on the right.
Image heatmap(const std::vector<std::vector<double>>& values,
              const std::vector<std::string>& row_labels,
              const std::vector<std::string>& col_labels);

}  // namespace sl::trainer
