// Bounded best-first lists of (score, index) pairs, the state of top-k search.
//
// Candidates are ranked by score, higher first, and equal scores by index,
// lower first. That is a strict total order on distinct indices, so the k
// best candidates of any set are unique. Merging lists built from any split
// of the candidates therefore gives the same result, and top-k does not
// depend on how documents are divided among threads. NaN scores are never
// accepted.
#pragma once

#include "../core/config.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace tessera::retrieval {

struct scored_index {
    float score;
    std::int64_t index;
};

// Whether candidate (score a, index i) ranks before (score b, index j).
TESSERA_ALWAYS_INLINE bool ranks_before(float a, std::int64_t i, float b, std::int64_t j)
{
    return a > b || (a == b && i < j);
}

namespace detail {

// A view of at most `capacity` candidates kept sorted best first in
// caller-owned storage, with its count in caller-owned memory.
class top_k_list {
public:
    top_k_list(scored_index* items, std::size_t* count, std::size_t capacity)
        : items_(items), count_(count), capacity_(capacity)
    {
    }

    // Whether a candidate would enter the list. NaN never does.
    TESSERA_ALWAYS_INLINE bool accepts(float score, std::int64_t index) const
    {
        if (std::isnan(score) || capacity_ == 0) {
            return false;
        }
        if (*count_ < capacity_) {
            return true;
        }
        const scored_index& last = items_[capacity_ - 1];
        return ranks_before(score, index, last.score, last.index);
    }

    // Inserts a candidate that accepts() returned true for, dropping the
    // last one when the list is full.
    void insert(float score, std::int64_t index)
    {
        std::size_t position = *count_ < capacity_ ? (*count_)++ : capacity_ - 1;
        while (position > 0 && ranks_before(score, index, items_[position - 1].score, items_[position - 1].index)) {
            items_[position] = items_[position - 1];
            --position;
        }
        items_[position] = {score, index};
    }

    TESSERA_ALWAYS_INLINE void offer(float score, std::int64_t index)
    {
        if (accepts(score, index)) {
            insert(score, index);
        }
    }

    std::size_t size() const { return *count_; }
    const scored_index& operator[](std::size_t i) const { return items_[i]; }

private:
    scored_index* items_;
    std::size_t* count_;
    std::size_t capacity_;
};

} // namespace detail

} // namespace tessera::retrieval
