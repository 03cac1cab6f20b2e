// PNG output read back by hand (chunk layout, CRCs, inflated scanlines), the colour scale, and the
// heatmap's cells coloured by their values.
#include "trainer/png.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <string>

namespace sl::trainer {
namespace {

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 |
         uint32_t(b[at + 3]);
}

struct Chunk {
  std::string type;
  std::vector<uint8_t> data;
};

std::vector<Chunk> chunks(const std::vector<uint8_t>& png) {
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_TRUE(png.size() > 8 && std::equal(sig, sig + 8, png.begin())) << "bad signature";
  std::vector<Chunk> out;
  for (size_t at = 8; at + 12 <= png.size();) {
    uint32_t len = be32(png, at);
    EXPECT_LE(at + 12 + len, png.size());
    Chunk c{std::string(png.begin() + long(at) + 4, png.begin() + long(at) + 8),
            std::vector<uint8_t>(png.begin() + long(at) + 8, png.begin() + long(at + 8 + len))};
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, png.data() + at + 4, uInt(len + 4));
    EXPECT_EQ(be32(png, at + 8 + len), uint32_t(crc)) << "CRC of chunk " << c.type;
    out.push_back(std::move(c));
    at += 12 + len;
  }
  return out;
}

TEST(Png, ChunksCrcAndPixelsReadBack) {
  Image img(3, 2, {1, 2, 3});
  img.fill(1, 0, 1, 1, {200, 100, 50});
  img.fill(2, 1, 5, 5, {9, 8, 7});  // clipped at the border
  std::vector<Chunk> c = chunks(encode_png(img));
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].type, "IHDR");
  EXPECT_EQ(c[1].type, "IDAT");
  EXPECT_EQ(c[2].type, "IEND");
  ASSERT_EQ(c[0].data.size(), 13u);
  EXPECT_EQ(be32(c[0].data, 0), 3u);
  EXPECT_EQ(be32(c[0].data, 4), 2u);
  EXPECT_EQ(c[0].data[8], 8);  // bit depth
  EXPECT_EQ(c[0].data[9], 2);  // truecolour
  std::vector<uint8_t> raw(2 * (1 + 3 * 3));
  uLongf n = raw.size();
  ASSERT_EQ(uncompress(raw.data(), &n, c[1].data.data(), uLong(c[1].data.size())), Z_OK);
  ASSERT_EQ(n, raw.size());
  const std::vector<uint8_t> want = {0, 1, 2, 3, 200, 100, 50, 1, 2, 3,
                                     0, 1, 2, 3, 1,   2,   3,  9, 8, 7};
  EXPECT_EQ(raw, want);
}

TEST(Png, WriteReportsTheBadPath) {
  Status s = write_png("/nonexistent_dir_sl/x.png", Image(1, 1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent_dir_sl/x.png"), std::string::npos);
}

TEST(Png, ColourScaleIsOrderedAndClamped) {
  auto lum = [](Rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; };
  double prev = -1;
  for (int i = 0; i <= 20; ++i) {
    double l = lum(colour_scale(i / 20.0));
    EXPECT_GT(l, prev) << "luminance not increasing at " << i / 20.0;
    prev = l;
  }
  EXPECT_EQ(colour_scale(-3), colour_scale(0));
  EXPECT_EQ(colour_scale(7), colour_scale(1));
  Rgb nan = colour_scale(std::nan(""));
  EXPECT_TRUE(nan.r == nan.g && nan.g == nan.b) << "NaN should be grey";
}

TEST(Png, HeatmapCellsHaveTheirValuesColour) {
  std::vector<std::vector<double>> v = {{0.0, 0.5, 1.0}, {0.25, std::nan(""), 0.75}};
  Image img = heatmap(v, {"0%", "100%"}, {"16", "32", "65536"});
  // Find each cell's top-left corner: scan the first row of cells for the colour changes.
  Rgb c00 = colour_scale(0.0);
  int x0 = -1, y0 = -1;
  for (int y = 0; y < img.height() && x0 < 0; ++y)
    for (int x = 0; x < img.width(); ++x)
      if (img.at(x, y) == c00) {
        x0 = x, y0 = y;
        break;
      }
  ASSERT_GE(x0, 0) << "no cell with the colour of 0";
  int cell_w = 0;
  while (img.at(x0 + cell_w, y0) == c00) ++cell_w;
  int cell_h = 0;
  while (img.at(x0, y0 + cell_h) == c00) ++cell_h;
  for (size_t r = 0; r < 2; ++r)
    for (size_t c = 0; c < 3; ++c)
      EXPECT_EQ(img.at(x0 + int(c) * cell_w + 1, y0 + int(r) * cell_h + 1), colour_scale(v[r][c]))
          << "cell " << r << "," << c;
  EXPECT_THROW(heatmap(v, {"a"}, {"1", "2", "3"}), Error);
}

}  // namespace
}  // namespace sl::trainer
