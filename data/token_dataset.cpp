// Token files through the HDF5 C API (data/token_dataset.h). Every HDF5 object is held by an
// owning handle; every public entry point silences HDF5's error stack printing for its duration
// and turns a failing call into a Status that names the file.
#include "data/token_dataset.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>

namespace sl::data {
namespace {

namespace fs = std::filesystem;

constexpr hsize_t kTokenChunk = 1 << 16;  // tokens per chunk: 128 KiB as uint16
constexpr int kDeflateLevel = 6;

// Owns one HDF5 identifier and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  bool ok() const { return id_ >= 0; }
  hid_t get() const { return id_; }
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Switches HDF5's automatic error printing off for its lifetime.
class QuietHdf5 {
 public:
  QuietHdf5() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5(const QuietHdf5&) = delete;
  QuietHdf5& operator=(const QuietHdf5&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

Status write_int_attr(hid_t obj, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0)
    return Status::IoError(std::string("cannot write attribute ") + name);
  return Status::Ok();
}

Status write_str_attr(hid_t obj, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(value.size(), 1));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), padded.data()) < 0)
    return Status::IoError(std::string("cannot write attribute ") + name);
  return Status::Ok();
}

// Opens root attribute `name` of the expected class; the error says what was found.
StatusOr<Handle> open_attr(hid_t file, const std::string& path, const char* name, H5T_class_t want,
                           const char* want_text) {
  if (H5Aexists(file, name) <= 0)
    return Status::Corruption(path + ": missing root attribute '" + name + "' (is this a " +
                              kTokenFormat + " file?)");
  Handle attr(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) return Status::Corruption(path + ": cannot read attribute '" + name + "'");
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  if (H5Tget_class(type.get()) != want || H5Sget_simple_extent_npoints(space.get()) != 1)
    return Status::Corruption(path + ": attribute '" + name + "' must be a single " + want_text);
  return attr;
}

StatusOr<int64_t> read_int_attr(hid_t file, const std::string& path, const char* name) {
  StatusOr<Handle> attr = open_attr(file, path, name, H5T_INTEGER, "integer");
  if (!attr.ok()) return attr.status();
  int64_t v = 0;
  if (H5Aread(attr.value().get(), H5T_NATIVE_INT64, &v) < 0)
    return Status::Corruption(path + ": cannot read attribute '" + name + "'");
  return v;
}

StatusOr<std::string> read_str_attr(hid_t file, const std::string& path, const char* name) {
  StatusOr<Handle> attr = open_attr(file, path, name, H5T_STRING, "string");
  if (!attr.ok()) return attr.status();
  hid_t a = attr.value().get();
  Handle type(H5Aget_type(a), H5Tclose);
  Status bad = Status::Corruption(path + ": cannot read attribute '" + name + "'");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    char* s = nullptr;
    if (H5Aread(a, mem.get(), &s) < 0 || s == nullptr) return bad;
    std::string out(s);
    H5free_memory(s);
    return out;
  }
  size_t n = H5Tget_size(type.get());
  std::string buf(n, '\0');
  if (n == 0 || H5Aread(a, type.get(), buf.data()) < 0) return bad;
  return buf.substr(0, buf.find('\0'));
}

// A rank-1 dataset: its handle and length.
struct Dataset1D {
  Handle dset;
  int64_t length = 0;
  Handle type;
};

StatusOr<Dataset1D> open_1d(hid_t file, const std::string& path, const char* name) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    return Status::Corruption(path + ": missing dataset " + name);
  Dataset1D d;
  hid_t dapl = H5P_DEFAULT;
  Handle access(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  if (access.ok() && H5Pset_chunk_cache(access.get(), 521, 8 << 20, 0.75) >= 0) dapl = access.get();
  d.dset = Handle(H5Dopen2(file, name, dapl), H5Dclose);
  if (!d.dset.ok()) return Status::Corruption(path + ": cannot open dataset " + name);
  Handle space(H5Dget_space(d.dset.get()), H5Sclose);
  d.type = Handle(H5Dget_type(d.dset.get()), H5Tclose);
  if (!space.ok() || !d.type.ok())
    return Status::Corruption(path + ": dataset " + name + " is corrupt");
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank != 1)
    return Status::Corruption(path + ": dataset " + name + " has rank " + std::to_string(rank) +
                              ", expected 1");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  d.length = int64_t(n);
  return d;
}

std::string int_type_name(hid_t type) {
  if (H5Tget_class(type) != H5T_INTEGER) return "a non-integer type";
  bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
  return std::string(is_signed ? "int" : "uint") + std::to_string(8 * H5Tget_size(type));
}

void fsync_path(const std::string& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Writer

struct TokenDatasetWriter::Impl {
  std::string path, tmp_path;
  int64_t vocab_size = 0;
  Handle file, tokens;
  std::vector<int32_t> pending;  // appended, not yet written to /tokens
  std::vector<int64_t> offsets{0};
  int64_t written = 0;
  bool finished = false;

  int64_t n_tokens() const { return written + int64_t(pending.size()); }

  Status flush() {
    if (pending.empty()) return Status::Ok();
    hsize_t start = hsize_t(written), count = pending.size(), total = start + count;
    if (H5Dset_extent(tokens.get(), &total) < 0) return io("cannot extend /tokens");
    Handle fspace(H5Dget_space(tokens.get()), H5Sclose);
    Handle mspace(H5Screate_simple(1, &count, nullptr), H5Sclose);
    if (!fspace.ok() || !mspace.ok() ||
        H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr) < 0 ||
        H5Dwrite(tokens.get(), H5T_NATIVE_INT32, mspace.get(), fspace.get(), H5P_DEFAULT,
                 pending.data()) < 0)
      return io("cannot write /tokens");
    written = int64_t(total);
    pending.clear();
    return Status::Ok();
  }

  Status write_offsets() {
    hsize_t n = offsets.size(), chunk = std::min<hsize_t>(n, kTokenChunk);
    Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    if (H5Pset_chunk(dcpl.get(), 1, &chunk) < 0 || H5Pset_deflate(dcpl.get(), kDeflateLevel) < 0)
      return io("cannot set up /doc_offsets");
    Handle d(H5Dcreate2(file.get(), "/doc_offsets", H5T_STD_I64LE, space.get(), H5P_DEFAULT,
                        dcpl.get(), H5P_DEFAULT),
             H5Dclose);
    if (!d.ok() ||
        H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets.data()) < 0)
      return io("cannot write /doc_offsets");
    return Status::Ok();
  }

  Status io(const std::string& what) const { return Status::IoError(path + ": " + what); }

  // Closes the HDF5 objects and removes the temporary file.
  void abandon() {
    tokens.reset();
    file.reset();
    if (!tmp_path.empty()) std::remove(tmp_path.c_str());
    finished = true;
  }
};

TokenDatasetWriter::TokenDatasetWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenDatasetWriter::TokenDatasetWriter(TokenDatasetWriter&&) noexcept = default;
TokenDatasetWriter& TokenDatasetWriter::operator=(TokenDatasetWriter&&) noexcept = default;

TokenDatasetWriter::~TokenDatasetWriter() {
  if (impl_ && !impl_->finished) {
    QuietHdf5 quiet;
    impl_->abandon();
  }
}

StatusOr<TokenDatasetWriter> TokenDatasetWriter::create(const std::string& path, int64_t vocab_size,
                                                        const std::string& tokenizer) {
  if (vocab_size < 1)
    return Status::InvalidArgument(path + ": vocab_size " + std::to_string(vocab_size) + " < 1");
  if (vocab_size > (int64_t(1) << 31))
    return Status::InvalidArgument(path + ": vocab_size " + std::to_string(vocab_size) +
                                   " does not fit int32 token ids");
  QuietHdf5 quiet;
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->vocab_size = vocab_size;
  impl->tmp_path = path + ".tmp." + std::to_string(::getpid());
  impl->file =
      Handle(H5Fcreate(impl->tmp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!impl->file.ok()) {
    std::string tmp = std::exchange(impl->tmp_path, "");
    return Status::IoError(path + ": cannot create " + tmp +
                           " (does the directory exist and is it writable?)");
  }
  TokenDatasetWriter w(std::move(impl));
  Impl& m = *w.impl_;
  hid_t root = m.file.get();
  Status s = write_str_attr(root, "format", kTokenFormat);
  if (s.ok()) s = write_int_attr(root, "version", kTokenFormatVersion);
  if (s.ok()) s = write_int_attr(root, "vocab_size", vocab_size);
  if (s.ok()) s = write_str_attr(root, "tokenizer", tokenizer);
  if (!s.ok()) return Status::IoError(path + ": " + s.message());

  hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = kTokenChunk;
  Handle space(H5Screate_simple(1, &zero, &unlimited), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (H5Pset_chunk(dcpl.get(), 1, &chunk) < 0 || H5Pset_shuffle(dcpl.get()) < 0 ||
      H5Pset_deflate(dcpl.get(), kDeflateLevel) < 0 || H5Pset_fletcher32(dcpl.get()) < 0)
    return m.io("cannot set up /tokens");
  hid_t dtype = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_I32LE;
  m.tokens =
      Handle(H5Dcreate2(root, "/tokens", dtype, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
             H5Dclose);
  if (!m.tokens.ok()) return m.io("cannot create /tokens");
  return w;
}

Status TokenDatasetWriter::append(const int32_t* tokens, int64_t n) {
  Impl& m = *impl_;
  SL_CHECK(!m.finished) << m.path << ": append() after close()";
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= m.vocab_size)
      return Status::InvalidArgument(m.path + ": document " + std::to_string(m.offsets.size() - 1) +
                                     ", token " + std::to_string(i) + ": id " +
                                     std::to_string(tokens[i]) + " is outside [0, " +
                                     std::to_string(m.vocab_size) + ")");
  QuietHdf5 quiet;
  for (int64_t i = 0; i < n;) {
    int64_t take = std::min<int64_t>(n - i, int64_t(kTokenChunk) - int64_t(m.pending.size()));
    m.pending.insert(m.pending.end(), tokens + i, tokens + i + take);
    i += take;
    if (m.pending.size() == kTokenChunk) {
      Status s = m.flush();
      if (!s.ok()) return s;
    }
  }
  m.offsets.push_back(m.n_tokens());
  return Status::Ok();
}

Status TokenDatasetWriter::close() {
  Impl& m = *impl_;
  SL_CHECK(!m.finished) << m.path << ": close() called twice";
  QuietHdf5 quiet;
  if (m.n_tokens() == 0) {
    m.abandon();
    return Status::InvalidArgument(m.path + ": no tokens to write (" +
                                   std::to_string(m.offsets.size() - 1) +
                                   " documents, all empty); nothing was written");
  }
  Status s = m.flush();
  if (s.ok()) s = m.write_offsets();
  m.tokens.reset();
  if (s.ok() && H5Fflush(m.file.get(), H5F_SCOPE_GLOBAL) < 0) s = m.io("cannot flush the file");
  if (s.ok() && H5Fclose(m.file.release()) < 0) s = m.io("cannot close the file");
  if (!s.ok()) {
    m.abandon();
    return s;
  }
  fsync_path(m.tmp_path);
  std::error_code ec;
  fs::rename(m.tmp_path, m.path, ec);
  if (ec) {
    m.abandon();
    return m.io("cannot rename " + m.tmp_path + " into place: " + ec.message());
  }
  fsync_path(fs::absolute(fs::path(m.path)).parent_path().string());
  m.finished = true;
  return Status::Ok();
}

int64_t TokenDatasetWriter::n_docs() const {
  return int64_t(impl_->offsets.size()) - 1;
}
int64_t TokenDatasetWriter::n_tokens() const {
  return impl_->n_tokens();
}

// ---------------------------------------------------------------------------------------------
// Reader

struct TokenDataset::Impl {
  std::string path, tokenizer;
  int64_t vocab_size = 0;
  int bytes_per_token = 0;
  Handle file, tokens;
  int64_t n_tokens = 0;
  std::vector<int64_t> offsets;
};

TokenDataset::TokenDataset(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;
TokenDataset::~TokenDataset() {
  if (impl_) {
    QuietHdf5 quiet;
    impl_.reset();
  }
}

StatusOr<TokenDataset> TokenDataset::open(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return Status::NotFound(path + ": no such file");
  if (fs::is_directory(st)) return Status::InvalidArgument(path + ": is a directory, not a file");
  QuietHdf5 quiet;
  if (H5Fis_hdf5(path.c_str()) <= 0)
    return Status::Corruption(path + ": not an HDF5 file (no HDF5 signature; expected a " +
                              kTokenFormat + " file from `superlinear data build`)");
  auto m = std::make_unique<Impl>();
  m->path = path;
  m->file = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!m->file.ok())
    return Status::Corruption(path + ": cannot be opened as HDF5 (truncated or corrupt file)");
  hid_t f = m->file.get();

  StatusOr<std::string> format = read_str_attr(f, path, "format");
  if (!format.ok()) return format.status();
  if (format.value() != kTokenFormat)
    return Status::Corruption(path + ": attribute 'format' is \"" + format.value() +
                              "\", expected \"" + kTokenFormat + "\"");
  StatusOr<int64_t> version = read_int_attr(f, path, "version");
  if (!version.ok()) return version.status();
  if (version.value() != kTokenFormatVersion)
    return Status::Corruption(path + ": format version " + std::to_string(version.value()) +
                              " is not supported (this build reads version " +
                              std::to_string(kTokenFormatVersion) + ")");
  StatusOr<int64_t> vocab = read_int_attr(f, path, "vocab_size");
  if (!vocab.ok()) return vocab.status();
  m->vocab_size = vocab.value();
  if (m->vocab_size < 1 || m->vocab_size > (int64_t(1) << 31))
    return Status::Corruption(path + ": attribute 'vocab_size' is " +
                              std::to_string(m->vocab_size) + ", expected 1 .. 2^31");
  StatusOr<std::string> tokenizer = read_str_attr(f, path, "tokenizer");
  if (!tokenizer.ok()) return tokenizer.status();
  m->tokenizer = tokenizer.value();

  StatusOr<Dataset1D> tokens = open_1d(f, path, "/tokens");
  if (!tokens.ok()) return tokens.status();
  hid_t tt = tokens.value().type.get();
  bool is_u16 =
      H5Tget_class(tt) == H5T_INTEGER && H5Tget_size(tt) == 2 && H5Tget_sign(tt) == H5T_SGN_NONE;
  bool is_i32 =
      H5Tget_class(tt) == H5T_INTEGER && H5Tget_size(tt) == 4 && H5Tget_sign(tt) == H5T_SGN_2;
  if (!is_u16 && !is_i32)
    return Status::Corruption(path + ": dataset /tokens has dtype " + int_type_name(tt) +
                              ", expected uint16 or int32");
  if (is_u16 && m->vocab_size > 65536)
    return Status::Corruption(path + ": dataset /tokens is uint16 but vocab_size is " +
                              std::to_string(m->vocab_size) + " (> 65536 needs int32)");
  m->bytes_per_token = is_u16 ? 2 : 4;
  m->n_tokens = tokens.value().length;
  if (m->n_tokens == 0) return Status::Corruption(path + ": dataset /tokens is empty");
  m->tokens = std::move(tokens.value().dset);

  StatusOr<Dataset1D> offs = open_1d(f, path, "/doc_offsets");
  if (!offs.ok()) return offs.status();
  hid_t ot = offs.value().type.get();
  if (H5Tget_class(ot) != H5T_INTEGER || H5Tget_size(ot) != 8 || H5Tget_sign(ot) != H5T_SGN_2)
    return Status::Corruption(path + ": dataset /doc_offsets has dtype " + int_type_name(ot) +
                              ", expected int64");
  int64_t n_off = offs.value().length;
  if (n_off < 2)
    return Status::Corruption(path + ": dataset /doc_offsets has " + std::to_string(n_off) +
                              " entries, expected n_docs + 1 >= 2");
  m->offsets.resize(size_t(n_off));
  if (H5Dread(offs.value().dset.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
              m->offsets.data()) < 0)
    return Status::Corruption(path + ": dataset /doc_offsets cannot be read (corrupt file)");
  if (m->offsets[0] != 0)
    return Status::Corruption(path + ": /doc_offsets[0] is " + std::to_string(m->offsets[0]) +
                              ", expected 0");
  for (int64_t i = 1; i < n_off; ++i)
    if (m->offsets[size_t(i)] < m->offsets[size_t(i - 1)])
      return Status::Corruption(path + ": /doc_offsets decreases at index " + std::to_string(i) +
                                " (" + std::to_string(m->offsets[size_t(i - 1)]) + " then " +
                                std::to_string(m->offsets[size_t(i)]) + ")");
  if (m->offsets.back() != m->n_tokens)
    return Status::Corruption(path + ": /doc_offsets ends at " + std::to_string(m->offsets.back()) +
                              " but /tokens has " + std::to_string(m->n_tokens) + " tokens");
  return TokenDataset(std::move(m));
}

const std::string& TokenDataset::path() const {
  return impl_->path;
}
int64_t TokenDataset::vocab_size() const {
  return impl_->vocab_size;
}
const std::string& TokenDataset::tokenizer() const {
  return impl_->tokenizer;
}
int TokenDataset::bytes_per_token() const {
  return impl_->bytes_per_token;
}
int64_t TokenDataset::n_tokens() const {
  return impl_->n_tokens;
}
int64_t TokenDataset::n_docs() const {
  return int64_t(impl_->offsets.size()) - 1;
}
const std::vector<int64_t>& TokenDataset::doc_offsets() const {
  return impl_->offsets;
}

Status TokenDataset::read(int64_t start, int64_t n, int32_t* out) const {
  const Impl& m = *impl_;
  if (start < 0 || n < 0 || start + n > m.n_tokens)
    return Status::InvalidArgument(m.path + ": read of tokens [" + std::to_string(start) + ", " +
                                   std::to_string(start + n) + ") outside [0, " +
                                   std::to_string(m.n_tokens) + ")");
  if (n == 0) return Status::Ok();
  QuietHdf5 quiet;
  hsize_t s = hsize_t(start), count = hsize_t(n);
  Handle fspace(H5Dget_space(m.tokens.get()), H5Sclose);
  Handle mspace(H5Screate_simple(1, &count, nullptr), H5Sclose);
  if (!fspace.ok() || !mspace.ok() ||
      H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &s, nullptr, &count, nullptr) < 0 ||
      H5Dread(m.tokens.get(), H5T_NATIVE_INT32, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0)
    return Status::Corruption(m.path + ": tokens [" + std::to_string(start) + ", " +
                              std::to_string(start + n) +
                              ") cannot be read (corrupt or truncated file)");
  for (int64_t i = 0; i < n; ++i)
    if (out[i] < 0 || out[i] >= m.vocab_size)
      return Status::Corruption(m.path + ": token " + std::to_string(start + i) + " has id " +
                                std::to_string(out[i]) +
                                ", outside [0, vocab_size = " + std::to_string(m.vocab_size) + ")");
  return Status::Ok();
}

StatusOr<std::vector<int32_t>> TokenDataset::read(int64_t start, int64_t n) const {
  std::vector<int32_t> out(size_t(std::max<int64_t>(n, 0)));
  Status s = read(start, n, out.data());
  if (!s.ok()) return s;
  return out;
}

StatusOr<std::vector<int32_t>> TokenDataset::document(int64_t i) const {
  if (i < 0 || i >= n_docs())
    return Status::InvalidArgument(path() + ": document " + std::to_string(i) + " outside [0, " +
                                   std::to_string(n_docs()) + ")");
  return read(doc_offsets()[size_t(i)], doc_length(i));
}

}  // namespace sl::data
