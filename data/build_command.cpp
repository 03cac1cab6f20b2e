// `superlinear data build` and `data info` (data/build_command.h). Documents are streamed into
// the writer one at a time; only one input file (or, per line, one line) is in memory at once.
#include "data/build_command.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "data/byte_tokenizer.h"
#include "data/token_dataset.h"

namespace sl::data {
namespace {

namespace fs = std::filesystem;

bool hidden(const fs::path& p) {
  std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

std::string normal(const fs::path& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return (ec ? p : a).lexically_normal().string();
}

const char* kUsage =
    "usage: superlinear data build --output OUT.h5 [--doc-per-file | --doc-per-line |\n"
    "                              --separator TEXT] INPUT...\n"
    "       superlinear data info FILE.h5\n"
    "  build   tokenise text files (directories recursively, in sorted order) with the byte\n"
    "          tokenizer into an HDF5 token file; one document per file (default), per line,\n"
    "          or per piece between occurrences of TEXT\n"
    "  info    check a token file and print what it holds\n";

int cmd_build(const std::vector<std::string>& args, std::FILE* out, std::FILE* err) {
  BuildOptions o;
  int modes = 0;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* flag) -> const std::string* {
      if (i + 1 >= args.size()) {
        std::fprintf(err, "superlinear data build: %s needs a value\n", flag);
        return nullptr;
      }
      return &args[++i];
    };
    if (a == "--output" || a == "-o") {
      const std::string* v = value("--output");
      if (!v) return 2;
      o.output = *v;
    } else if (a.rfind("--output=", 0) == 0) {
      o.output = a.substr(9);
    } else if (a == "--doc-per-file") {
      o.split = BuildOptions::Split::kPerFile, ++modes;
    } else if (a == "--doc-per-line") {
      o.split = BuildOptions::Split::kPerLine, ++modes;
    } else if (a == "--separator") {
      const std::string* v = value("--separator");
      if (!v) return 2;
      o.split = BuildOptions::Split::kSeparator, o.separator = *v, ++modes;
    } else if (a.rfind("--separator=", 0) == 0) {
      o.split = BuildOptions::Split::kSeparator, o.separator = a.substr(12), ++modes;
    } else if (a.rfind("-", 0) == 0 && a != "-") {
      std::fprintf(err, "superlinear data build: unknown option '%s'\n%s", a.c_str(), kUsage);
      return 2;
    } else {
      o.inputs.push_back(a);
    }
  }
  if (o.output.empty() || o.inputs.empty()) {
    std::fprintf(err, "superlinear data build: %s\n%s",
                 o.output.empty() ? "--output is required" : "no INPUT given", kUsage);
    return 2;
  }
  if (modes > 1) {
    std::fprintf(err,
                 "superlinear data build: choose one of --doc-per-file, --doc-per-line, "
                 "--separator\n");
    return 2;
  }
  if (o.split == BuildOptions::Split::kSeparator && o.separator.empty()) {
    std::fprintf(err, "superlinear data build: --separator needs a non-empty TEXT\n");
    return 2;
  }
  StatusOr<BuildSummary> r = build_token_dataset(o);
  if (!r.ok()) {
    std::fprintf(err, "superlinear data build: %s\n", r.status().message().c_str());
    return 1;
  }
  const BuildSummary& s = r.value();
  std::fprintf(out,
               "wrote %s: %lld documents from %lld files, %lld tokens (%d bytes each) from %lld "
               "bytes of text; file %lld bytes, compression ratio %.2f\n",
               o.output.c_str(), (long long)s.documents, (long long)s.files, (long long)s.tokens,
               s.bytes_per_token, (long long)s.text_bytes, (long long)s.file_bytes,
               s.compression_ratio());
  return 0;
}

int cmd_info(const std::vector<std::string>& args, std::FILE* out, std::FILE* err) {
  if (args.size() != 2) {
    std::fprintf(err, "%s", kUsage);
    return 2;
  }
  StatusOr<TokenDataset> d = TokenDataset::open(args[1]);
  if (!d.ok()) {
    std::fprintf(err, "superlinear data info: %s\n", d.status().message().c_str());
    return 1;
  }
  const TokenDataset& t = d.value();
  int64_t shortest = t.n_tokens(), longest = 0;
  for (int64_t i = 0; i < t.n_docs(); ++i) {
    shortest = std::min(shortest, t.doc_length(i));
    longest = std::max(longest, t.doc_length(i));
  }
  std::fprintf(out,
               "%s: %s v%lld, tokenizer \"%s\", vocab_size %lld, %s tokens\n"
               "  %lld documents, %lld tokens (document length %lld .. %lld, mean %.1f)\n",
               t.path().c_str(), kTokenFormat, (long long)kTokenFormatVersion,
               t.tokenizer().c_str(), (long long)t.vocab_size(),
               t.bytes_per_token() == 2 ? "uint16" : "int32", (long long)t.n_docs(),
               (long long)t.n_tokens(), (long long)shortest, (long long)longest,
               double(t.n_tokens()) / double(t.n_docs()));
  return 0;
}

}  // namespace

double BuildSummary::compression_ratio() const {
  return file_bytes > 0 ? double(tokens) * bytes_per_token / double(file_bytes) : 0.0;
}

StatusOr<std::vector<std::string>> list_input_files(const std::vector<std::string>& inputs,
                                                    const std::string& output) {
  const std::string out_norm = output.empty() ? "" : normal(output);
  auto is_output = [&](const fs::path& p) {
    if (out_norm.empty()) return false;
    std::string n = normal(p);
    return n == out_norm || n.rfind(out_norm + ".tmp.", 0) == 0;
  };
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    fs::file_status st = fs::status(in, ec);
    if (!fs::exists(st)) return Status::NotFound(in + ": no such file or directory");
    if (!fs::is_directory(st)) {
      files.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(in, fs::directory_options::follow_directory_symlink, ec);
    if (ec) return Status::IoError(in + ": cannot list: " + ec.message());
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) return Status::IoError(in + ": cannot list: " + ec.message());
      if (hidden(it->path())) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec) && !is_output(it->path())) found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  if (files.empty())
    return Status::InvalidArgument(
        "no input files found in the given inputs (directories are "
        "searched recursively; hidden entries are skipped)");
  return files;
}

StatusOr<BuildSummary> build_token_dataset(const BuildOptions& o) {
  if (o.split == BuildOptions::Split::kSeparator && o.separator.empty())
    return Status::InvalidArgument("--separator: empty separator");
  StatusOr<std::vector<std::string>> files = list_input_files(o.inputs, o.output);
  if (!files.ok()) return files.status();
  StatusOr<TokenDatasetWriter> w =
      TokenDatasetWriter::create(o.output, bytes::kVocabSize, bytes::kTokenizerName);
  if (!w.ok()) return w.status();
  TokenDatasetWriter& writer = w.value();
  BuildSummary sum;
  auto add = [&](std::string_view doc) {
    if (doc.empty()) return Status::Ok();
    sum.text_bytes += int64_t(doc.size());
    return writer.append(bytes::encode_document(doc));
  };
  for (const std::string& f : files.value()) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return Status::IoError(f + ": cannot open for reading");
    ++sum.files;
    Status s;
    if (o.split == BuildOptions::Split::kPerLine) {
      for (std::string line; s.ok() && std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        s = add(line);
      }
    } else {
      std::stringstream ss;
      ss << in.rdbuf();
      std::string text = ss.str();
      if (o.split == BuildOptions::Split::kPerFile) {
        s = add(text);
      } else {
        std::string_view rest = text;
        for (size_t at; s.ok() && (at = rest.find(o.separator)) != std::string_view::npos;) {
          s = add(rest.substr(0, at));
          rest.remove_prefix(at + o.separator.size());
        }
        if (s.ok()) s = add(rest);
      }
    }
    if (in.bad()) return Status::IoError(f + ": read error");
    if (!s.ok()) return s;
  }
  sum.documents = writer.n_docs();
  sum.tokens = writer.n_tokens();
  Status s = writer.close();
  if (!s.ok()) return s;
  std::error_code ec;
  sum.file_bytes = int64_t(fs::file_size(o.output, ec));
  sum.bytes_per_token = bytes::kVocabSize <= 65536 ? 2 : 4;
  return sum;
}

int data_command(const std::vector<std::string>& args, std::FILE* out, std::FILE* err) {
  if (args.empty()) {
    std::fprintf(err, "%s", kUsage);
    return 2;
  }
  if (args[0] == "build") return cmd_build(args, out, err);
  if (args[0] == "info") return cmd_info(args, out, err);
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fprintf(out, "%s", kUsage);
    return 0;
  }
  std::fprintf(err, "superlinear data: unknown subcommand '%s'\n%s", args[0].c_str(), kUsage);
  return 2;
}

}  // namespace sl::data
